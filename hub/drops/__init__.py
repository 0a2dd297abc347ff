"""Per-region drops: where regions and the hub exchange files (a local folder or SFTP).

See :mod:`hub.drops.base` for the layout, the dot-file rule and the error model.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from hub.drops.base import (
    ARCHIVE,
    EXTRACTS,
    FOLDERS,
    RECEIPTS,
    RECEIVED,
    REJECTED,
    Drop,
    DropError,
    DropFile,
    DropFileExists,
    DropFileNotFound,
    DropFileTooLarge,
    DropUnavailable,
    HostKeyMismatch,
    InvalidDropPath,
)
from hub.drops.local import LocalDrop
from hub.drops.sftp import SftpDrop, SftpSettings

__all__ = [
    "ARCHIVE",
    "EXTRACTS",
    "FOLDERS",
    "RECEIPTS",
    "RECEIVED",
    "REJECTED",
    "Drop",
    "DropError",
    "DropFile",
    "DropFileExists",
    "DropFileNotFound",
    "DropFileTooLarge",
    "DropUnavailable",
    "HostKeyMismatch",
    "InvalidDropPath",
    "LocalDrop",
    "SftpDrop",
    "SftpSettings",
    "open_drop",
]


def open_drop(url: str, settings: SftpSettings | None = None) -> Drop:
    """Open a region's drop from its configured location.

    ``file:///abs/path`` or a plain filesystem path gives a :class:`LocalDrop`;
    ``sftp://user@host[:port]/base/path`` gives an :class:`SftpDrop`, which needs ``settings``
    (credentials and, always, a pinned host key). Nothing is connected until first use.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "sftp":
        if settings is None:
            raise ValueError(f"{url}: an SFTP drop needs SftpSettings (credentials, host key)")
        return SftpDrop.from_url(url, settings)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{url}: file:// URLs must not name a remote host")
        if parts.query or parts.fragment:
            raise ValueError(f"{url}: a file:// drop URL takes no query or fragment")
        path = urllib.parse.unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"{url}: a file:// URL needs an absolute path")
        return LocalDrop(Path(path))
    if parts.scheme and len(parts.scheme) > 1:  # one letter would be a Windows drive
        raise ValueError(f"{url}: unsupported drop URL scheme {parts.scheme!r}")
    if not url:
        raise ValueError("empty drop location")
    return LocalDrop(Path(url))
