"""The drop contract shared by local folders and SFTP servers.

A *drop* is where one member region and the hub exchange files. Every drop has the same
layout, named from the region's point of view::

    extracts/            region -> hub   extracts the region wants sent to other regions
    extracts/.archive/   hub only        extracts the hub has picked up (moved here, never deleted)
    received/            hub -> region   information received from NTjP for the region's women
    receipts/            hub -> region   receipts / status files for the region's extracts
    rejected/            hub -> region   extracts or records the hub could not accept, with reasons

The archive lives *inside* ``extracts/`` so that a pick-up is a rename within one directory tree
(atomic on a local filesystem and on OpenSSH), and it starts with a dot so that, by the rule
below, region systems listing ``extracts/`` never see it.

**The dot-file rule.** Every writer (the hub and the region) writes a file under a temporary name
that starts with ``.`` and renames it to its final name only when it is complete. Every reader
(the hub and the region) ignores names starting with ``.``. A reader therefore never sees half a
file. The hub's temporary names look like ``.<final name>.tmp-<random hex>``; a crash can leave
one behind, which is harmless (nobody reads it) and can be swept by an operator.

**Never written twice.** :meth:`Drop.write_atomic` refuses to replace an existing final name and
returns ``False`` instead, so a retried delivery cannot overwrite what a region may already be
reading. Callers put a time and the message id in every name, so a duplicate is also detectable
by name.

Names are single path components (no ``/``, no ``\\``, no leading dot, no control characters,
at most :data:`MAX_NAME_BYTES` bytes of UTF-8) and folders are exactly one of :data:`FOLDERS`; a
drop never touches a path built from anything else, so no input can walk out of the drop.
"""

from __future__ import annotations

import abc
import secrets
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Self

EXTRACTS = "extracts"
RECEIVED = "received"
RECEIPTS = "receipts"
REJECTED = "rejected"
ARCHIVE = "extracts/.archive"

#: Every folder a drop may touch, parents before children (the order ``ensure_layout`` creates).
FOLDERS: tuple[str, ...] = (EXTRACTS, ARCHIVE, RECEIVED, RECEIPTS, REJECTED)

#: Leaves room below the usual 255-byte filesystem limit for the temporary-name decoration.
MAX_NAME_BYTES = 200

#: Default cap for :meth:`Drop.read`; extracts are text files far below this.
DEFAULT_MAX_READ_BYTES = 64 * 1024 * 1024


class DropError(Exception):
    """A drop operation failed.

    ``permanent`` tells the caller whether retrying later can help: a wrong password, a changed
    host key or a permission problem stays broken until someone changes configuration, while a
    refused connection or a timeout may pass on its own.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class DropUnavailable(DropError):
    """The drop cannot be used at all right now (unreachable, authentication refused, ...)."""


class HostKeyMismatch(DropUnavailable):
    """The SFTP server's host key is not the pinned one (or none is pinned). Always permanent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class DropFileNotFound(DropError):
    """The named file is not in the folder (for example another hub node already moved it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class DropFileExists(DropError):
    """The target name of a move already exists; the drop never replaces files."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class DropFileTooLarge(DropError):
    """The file is larger than the cap the caller gave to :meth:`Drop.read`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class InvalidDropPath(DropError, ValueError):
    """A folder or file name that could escape or confuse the drop layout."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


@dataclass(frozen=True, slots=True)
class DropFile:
    """One complete file in a drop folder, as seen by :meth:`Drop.list_files`."""

    name: str
    size: int
    mtime: datetime  # timezone-aware, UTC


def validate_folder(folder: str) -> str:
    """Return ``folder`` if it is one of :data:`FOLDERS`, else raise :class:`InvalidDropPath`."""
    if folder not in FOLDERS:
        raise InvalidDropPath(f"unknown drop folder {folder!r}; expected one of {FOLDERS}")
    return folder


def name_problem(name: str) -> str | None:
    """Say why ``name`` is not an acceptable drop file name, or return None if it is."""
    if not isinstance(name, str) or not name:
        return "empty name"
    if name.startswith("."):
        # Covers "." and ".." too; dot names are temporary files by the dot-file rule.
        return "name starts with '.'"
    if "/" in name or "\\" in name:
        return "name contains a path separator"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "name contains a control character"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    if len(encoded) > MAX_NAME_BYTES:
        return f"name is longer than {MAX_NAME_BYTES} bytes"
    return None


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe single file name, else raise :class:`InvalidDropPath`."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidDropPath(f"invalid drop file name {name!r}: {problem}")
    return name


def temp_name(name: str) -> str:
    """A fresh temporary name for writing ``name``; hidden from readers by the dot-file rule."""
    return f".{name}.tmp-{secrets.token_hex(8)}"


def check_max_bytes(max_bytes: int) -> int:
    """Reject nonsensical read caps early (a negative cap would read nothing and look empty)."""
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")
    return max_bytes


class Drop(abc.ABC):
    """A region's drop: the same operations whether it is a local folder or an SFTP server.

    Use it as a context manager (or call :meth:`close`) so that network connections are
    released at the end of a job run. All failures are :class:`DropError` subclasses. A drop
    object is not for sharing between threads: give each job run (or thread) its own.
    """

    @abc.abstractmethod
    def ensure_layout(self) -> None:
        """Create any missing folder of the layout; existing folders are left alone."""

    @abc.abstractmethod
    def write_atomic(self, folder: str, name: str, data: bytes) -> bool:
        """Write ``data`` to ``folder/name`` atomically and durably, never replacing a file.

        Returns True if the file was written, False (writing nothing) if ``name`` already exists.
        """

    @abc.abstractmethod
    def exists(self, folder: str, name: str) -> bool:
        """Whether ``folder/name`` exists."""

    @abc.abstractmethod
    def list_files(self, folder: str) -> list[DropFile]:
        """Complete regular files in ``folder``, sorted by name; dot-files are never listed."""

    @abc.abstractmethod
    def read(self, folder: str, name: str, max_bytes: int = DEFAULT_MAX_READ_BYTES) -> bytes:
        """The bytes of ``folder/name``; :class:`DropFileTooLarge` if it exceeds ``max_bytes``."""

    @abc.abstractmethod
    def move(self, folder: str, name: str, to_folder: str, to_name: str | None = None) -> None:
        """Move ``folder/name`` to ``to_folder/(to_name or name)`` without replacing anything.

        Raises :class:`DropFileNotFound` if the source is gone (another hub node may have picked
        it up first) and :class:`DropFileExists` if the target exists.
        """

    @abc.abstractmethod
    def remove(self, folder: str, name: str) -> None:
        """Remove ``folder/name``; removing a file that is already gone is not an error."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise :class:`DropUnavailable` unless the drop can be reached and used."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release any connection; the drop may be used again afterwards (it reconnects)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
