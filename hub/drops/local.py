"""A drop that is a folder on a filesystem the hub can reach (local disk or a mounted share).

A region may write in its drop, so a region can put a symbolic link where a folder belongs
(``ln -s ../14/received extracts``) to point the hub at another region's files. Every operation
therefore walks from the root to its folder with directory descriptors, each step opened with
``O_DIRECTORY | O_NOFOLLOW`` relative to the one before (``openat``), and does its work relative
to the folder's descriptor: the root and every layout folder must be real directories, a link
anywhere on the way is refused (:class:`~hub.drops.base.DropError`, permanent), and what the
hub reads, writes or moves is inside the folder it walked to, whatever is renamed meanwhile.
Files are opened with ``O_NOFOLLOW`` too, and names are single components (no ``..``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from hub.drops.base import (
    DEFAULT_MAX_READ_BYTES,
    FOLDERS,
    Drop,
    DropError,
    DropFile,
    DropFileExists,
    DropFileNotFound,
    DropFileTooLarge,
    DropUnavailable,
    InvalidDropPath,
    check_max_bytes,
    name_problem,
    temp_name,
    validate_folder,
    validate_name,
)

log = logging.getLogger(__name__)

# Filesystems without hard links answer os.link with one of these; we then fall back to a
# check-then-rename, which has a tiny race documented in LocalDrop.write_atomic.
_NO_HARDLINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}

# Errors that will not go away by waiting: configuration or permissions must change.
_PERMANENT_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENAMETOOLONG,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.ELOOP,
    errno.EINVAL,
}


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """Turn OSError into DropError, saying whether retrying can help."""
    try:
        yield
    except DropError:
        raise
    except FileNotFoundError as exc:
        raise DropFileNotFound(f"{what}: {exc.strerror}") from exc
    except OSError as exc:
        raise DropError(
            f"{what}: {exc.strerror or exc}", permanent=exc.errno in _PERMANENT_ERRNOS
        ) from exc


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _fsync_dir(fd: int) -> None:
    """Make a rename or link in the folder ``fd`` durable; some filesystems cannot (fine)."""
    try:
        os.fsync(fd)
    except OSError:
        pass  # e.g. EINVAL on filesystems that do not support fsync on directories


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


class LocalDrop(Drop):
    """A drop rooted at ``root``; see :mod:`hub.drops.base` for the layout and the rules.

    Files the hub writes get ``file_mode`` (before umask): readable by the owner and group, so a
    region's pick-up process can be given access through a group, never by the world.
    """

    def __init__(self, root: Path, *, file_mode: int = 0o640) -> None:
        if ".." in Path(root).parts:
            raise InvalidDropPath(f"drop folder {root} must not contain '..'")
        self.root = Path(root)
        self.file_mode = file_mode

    def __repr__(self) -> str:
        return f"LocalDrop({str(self.root)!r})"

    def _dir(self, folder: str) -> Path:
        return self.root / validate_folder(folder)

    def _path(self, folder: str, name: str) -> Path:
        return self._dir(folder) / validate_name(name)

    def _open_root(self) -> int:
        """The root's descriptor; the root itself must be a directory, not a link to one."""
        try:
            return os.open(self.root, _DIR_FLAGS)
        except FileNotFoundError as exc:
            # An unmounted share looks like this too, so waiting may help.
            raise DropUnavailable(f"drop folder {self.root} does not exist") from exc
        except OSError as exc:
            raise self._not_a_folder(self.root, exc) from exc

    def _not_a_folder(self, path: Path, exc: OSError) -> DropError:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return DropError(
                f"{path} is a symbolic link or not a directory: refused (the folders of a drop "
                "must be real directories inside the region's own drop)",
                permanent=True,
            )
        return DropError(
            f"cannot open {path}: {exc.strerror or exc}", permanent=exc.errno in _PERMANENT_ERRNOS
        )

    @contextlib.contextmanager
    def _folder(self, folder: str, *, create: bool = False) -> Iterator[int]:
        """A descriptor of ``folder``, walked to from the root one real directory at a time.

        ``create`` makes missing steps on the way (``ensure_layout``); a link is refused either
        way, and so is anything that is not a directory.
        """
        validate_folder(folder)
        fd = self._open_root()
        try:
            here = self.root
            for part in folder.split("/"):
                here = here / part
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                try:
                    step = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError as exc:
                    raise DropFileNotFound(f"drop folder {here} does not exist") from exc
                except OSError as exc:
                    raise self._not_a_folder(here, exc) from exc
                os.close(fd)
                fd = step
            yield fd
        finally:
            os.close(fd)

    def ensure_layout(self) -> None:
        """Create the root (with parents) and every folder of the layout that is missing."""
        with _os_errors(f"cannot create layout in {self.root}"):
            self.root.mkdir(parents=True, exist_ok=True)
            for folder in FOLDERS:
                with self._folder(folder, create=True):
                    pass

    def write_atomic(self, folder: str, name: str, data: bytes) -> bool:
        """Write via an O_EXCL temporary file, fsync, then hard-link it to the final name.

        ``os.link`` fails with EEXIST if the final name exists, so refusing to overwrite is atomic
        even against another hub node writing the same name. Where hard links are not supported
        we check for the final name and rename; two writers racing in that window could both
        succeed, the later one replacing the earlier with (by construction) the same content.
        """
        final = self._path(folder, name)
        with _os_errors(f"cannot write {final}"), self._folder(folder) as directory:
            if _lexists(name, directory):
                return False
            tmp = temp_name(name)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = os.open(tmp, flags, self.file_mode, dir_fd=directory)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                try:
                    os.link(
                        tmp, name, src_dir_fd=directory, dst_dir_fd=directory, follow_symlinks=False
                    )
                except FileExistsError:
                    return False
                except OSError as exc:
                    if exc.errno not in _NO_HARDLINKS:
                        raise
                    if _lexists(name, directory):
                        return False
                    os.rename(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
                _fsync_dir(directory)
                return True
            finally:
                # After a successful link the temp name is a second link to the same file.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=directory)

    def exists(self, folder: str, name: str) -> bool:
        """Whether ``folder/name`` exists (a dangling symlink counts: the name is taken)."""
        validate_name(name)
        try:
            with (
                _os_errors(f"cannot look in {self._dir(folder)}"),
                self._folder(folder) as directory,
            ):
                return _lexists(name, directory)
        except DropFileNotFound:
            return False  # no such folder: no such file

    def list_files(self, folder: str) -> list[DropFile]:
        """Regular files only; dot-files, symlinks, directories and unsafe names are skipped."""
        path = self._dir(folder)
        files: list[DropFile] = []
        with (
            _os_errors(f"cannot list {path}"),
            self._folder(folder) as directory,
            os.scandir(directory) as entries,
        ):
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                problem = name_problem(entry.name)
                if problem is not None:
                    log.warning("ignoring %r in %s: %s", entry.name, path, problem)
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # moved away between listing and stat
                files.append(
                    DropFile(
                        name=entry.name,
                        size=st.st_size,
                        mtime=datetime.fromtimestamp(st.st_mtime, tz=UTC),
                    )
                )
        files.sort(key=lambda f: f.name)
        return files

    def read(self, folder: str, name: str, max_bytes: int = DEFAULT_MAX_READ_BYTES) -> bytes:
        """Read a regular file; symlinks are refused so a region cannot point us elsewhere."""
        check_max_bytes(max_bytes)
        path = self._path(folder, name)
        with _os_errors(f"cannot read {path}"), self._folder(folder) as directory:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise DropError(f"{path} is not a regular file", permanent=True)
                chunks: list[bytes] = []
                total = 0
                # Read one byte past the cap instead of trusting the size from stat, which a
                # file still growing under a careless writer would get wrong.
                while total <= max_bytes:
                    chunk = os.read(fd, min(1024 * 1024, max_bytes + 1 - total))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
            finally:
                os.close(fd)
        if total > max_bytes:
            raise DropFileTooLarge(f"{path} is larger than {max_bytes} bytes")
        return b"".join(chunks)

    def move(self, folder: str, name: str, to_folder: str, to_name: str | None = None) -> None:
        """Move by hard link + unlink, so an existing target is never replaced."""
        source = self._path(folder, name)
        new_name = name if to_name is None else to_name
        target = self._path(to_folder, new_name)
        with (
            _os_errors(f"cannot move {source} to {target}"),
            self._folder(folder) as src,
            self._folder(to_folder) as dst,
        ):
            try:
                os.link(name, new_name, src_dir_fd=src, dst_dir_fd=dst, follow_symlinks=False)
            except FileExistsError as exc:
                raise DropFileExists(f"{target} already exists") from exc
            except FileNotFoundError as exc:
                raise DropFileNotFound(f"{source} does not exist") from exc
            except OSError as exc:
                if exc.errno not in _NO_HARDLINKS:
                    raise
                if _lexists(new_name, dst):
                    raise DropFileExists(f"{target} already exists") from exc
                os.rename(name, new_name, src_dir_fd=src, dst_dir_fd=dst)
            else:
                os.unlink(name, dir_fd=src)
            _fsync_dir(dst)
            if folder != to_folder:
                _fsync_dir(src)

    def remove(self, folder: str, name: str) -> None:
        """Unlink ``folder/name``; already gone is fine (idempotent clean-up)."""
        path = self._path(folder, name)
        with (
            contextlib.suppress(DropFileNotFound),
            _os_errors(f"cannot remove {path}"),
            self._folder(folder) as directory,
            contextlib.suppress(FileNotFoundError),
        ):
            os.unlink(name, dir_fd=directory)

    def check(self) -> None:
        """The root must be a directory (not a link to one) that we can write to."""
        try:
            fd = self._open_root()
        except DropUnavailable:
            raise
        except DropError as exc:
            raise DropUnavailable(str(exc), permanent=exc.permanent) from exc
        os.close(fd)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise DropUnavailable(f"drop folder {self.root} is not writable", permanent=True)

    def close(self) -> None:
        """Nothing to release for a local folder."""
