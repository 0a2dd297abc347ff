"""A drop on a region's SFTP server, reached with paramiko and a pinned host key.

Trust: the server's host key must match a key pinned in the region's configuration
(:attr:`SftpSettings.host_key`). An unknown or changed key is refused with
:class:`~hub.drops.base.HostKeyMismatch` *before* any credential is sent; there is no
trust-on-first-use. We drive :class:`paramiko.Transport` ourselves instead of ``SSHClient`` so
that no host-key policy, ``~/.ssh`` key file or SSH agent can ever take part implicitly.

Connections: one SSH connection is opened lazily on first use and reused for every call until
:meth:`SftpDrop.close` (a job run opens a drop, does its work, closes it). A dead connection is
noticed before the next call and replaced.

Atomic writes follow the dot-file rule of :mod:`hub.drops.base`: upload to ``.name.tmp-<hex>``,
``fsync@openssh.com`` where the server offers it, then a plain SFTP ``rename``. Plain rename (not
``posix-rename@openssh.com``) is used because SFTPv3 rename fails when the target exists, and
OpenSSH implements it with ``link()`` + ``unlink()``, which is atomic. On servers that emulate it
with check-then-rename two writers of the same name could race; on servers other than OpenSSH
the hub also checks for the final name before uploading, and every name carries the message id,
so a duplicate is visible.
SFTP offers no way to fsync a directory, so the rename itself is as durable as the server makes it.

Links: a region controls its server, and a symbolic link where a folder belongs would point the
hub at another region's files. SFTP has no directory handles to work relative to, so before every
operation the hub checks its folder: on OpenSSH the server's ``realpath`` of the folder must be
exactly the path the hub asked for (one round trip; any link on the way, from the base path down,
changes it), elsewhere each component is ``lstat``-ed and must be a directory, not a link. A file
is read only if ``lstat`` says it is a regular file and the opened handle is the same file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import io
import logging
import posixpath
import socket
import stat
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from paramiko.sftp import CMD_EXTENDED

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
    HostKeyMismatch,
    check_max_bytes,
    name_problem,
    temp_name,
    validate_folder,
    validate_name,
)

log = logging.getLogger(__name__)

# A pinned "ssh-rsa" key may be offered under any of the RSA signature algorithms.
_HOSTKEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}

# SFTP reports these as permission problems; retrying will not fix them.
_PERMANENT_ERRNOS = {errno.EACCES, errno.EPERM}


@dataclass(frozen=True, kw_only=True)
class SftpSettings:
    """How to reach one region's SFTP drop. Secrets are kept out of ``repr``.

    ``host_key`` pins the server's host key; one or more lines, each either an OpenSSH public key
    (``ssh-ed25519 AAAA... [comment]``), a known_hosts line (``host ssh-ed25519 AAAA...``; the
    host part is informational, the pin belongs to this region) or a fingerprint
    (``SHA256:...`` as printed by ``ssh-keygen -lf``). Several lines allow a planned key rotation.
    Prefer full keys: with a key the hub asks the server for exactly that key type, while with
    only a fingerprint the server picks its preferred type, which must be the pinned one.

    ``connect_timeout`` bounds TCP connect, SSH negotiation and authentication, each;
    ``read_timeout`` bounds waiting for any single SFTP reply.
    """

    password: str | None = field(default=None, repr=False)
    private_key_path: Path | None = None
    private_key_pem: str | None = field(default=None, repr=False)
    private_key_passphrase: str | None = field(default=None, repr=False)
    host_key: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("SFTP timeouts must be positive")
        if self.private_key_path is not None and self.private_key_pem is not None:
            raise ValueError("give either private_key_path or private_key_pem, not both")
        if self.host_key is not None:
            parse_host_key_pins(self.host_key)  # fail at configuration time, not at 3 a.m.


@dataclass(frozen=True, slots=True)
class HostKeyPin:
    """One pinned host key: the full key blob, or only its SHA-256 fingerprint."""

    fingerprint: str  # "SHA256:<unpadded base64>", as OpenSSH prints it
    key_type: str | None = None
    blob: bytes | None = None

    def matches(self, key: paramiko.PKey) -> bool:
        """Whether ``key`` (as presented by a server) is this pinned key."""
        blob = key.asbytes()
        if self.blob is not None:
            return blob == self.blob
        return fingerprint(blob) == self.fingerprint


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _key_pin(key_type: str, b64: str) -> HostKeyPin:
    try:
        blob = base64.b64decode(b64, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"host key for {key_type} is not valid base64") from exc
    # The blob starts with its own type name; a mismatch means a garbled copy-paste.
    msg = paramiko.Message(blob)
    try:
        embedded = msg.get_text()
    except Exception as exc:  # paramiko raises assorted errors on short blobs
        raise ValueError(f"host key for {key_type} is truncated") from exc
    if embedded != key_type:
        raise ValueError(f"host key says {key_type!r} but its data is {embedded!r}")
    return HostKeyPin(fingerprint=fingerprint(blob), key_type=key_type, blob=blob)


def _looks_like_key_type(token: str) -> bool:
    return token.startswith(("ssh-", "ecdsa-sha2-", "sk-"))


def parse_host_key_pins(text: str) -> tuple[HostKeyPin, ...]:
    """Parse :attr:`SftpSettings.host_key`; raises ValueError on anything it cannot pin."""
    pins: list[HostKeyPin] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("SHA256:"):
            value = line.split()[0]
            try:
                b64 = value[len("SHA256:") :]
                digest = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
            except binascii.Error as exc:
                raise ValueError(f"bad host key fingerprint {value!r}") from exc
            if len(digest) != hashlib.sha256().digest_size:
                raise ValueError(f"bad host key fingerprint {value!r}")
            pins.append(HostKeyPin(fingerprint=value))
            continue
        tokens = line.split()
        if tokens[0].startswith("@"):
            # @cert-authority / @revoked change the meaning of the line; refuse to guess.
            raise ValueError(f"unsupported known_hosts marker {tokens[0]!r}")
        if len(tokens) >= 2 and _looks_like_key_type(tokens[0]):
            pins.append(_key_pin(tokens[0], tokens[1]))
        elif len(tokens) >= 3 and _looks_like_key_type(tokens[1]):
            pins.append(_key_pin(tokens[1], tokens[2]))
        else:
            raise ValueError(f"cannot read a host key from {line[:40]!r}")
    if not pins:
        raise ValueError("no host key in the pin")
    return tuple(pins)


def _load_private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    """Load an OpenSSH or PEM private key of any type paramiko supports."""
    data = text.encode()
    secret = passphrase.encode() if passphrase is not None else None
    loaded: object
    try:
        loaded = serialization.load_ssh_private_key(data, password=secret)
    except ValueError:
        loaded = serialization.load_pem_private_key(data, password=secret)
    key_class: type[paramiko.PKey]
    if isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        raise ValueError(f"unsupported private key type {type(loaded).__name__}")
    return key_class.from_private_key(io.StringIO(text), password=passphrase)


class SftpDrop(Drop):
    """A region's drop under ``base_path`` on an SFTP server; see the module docstring."""

    def __init__(
        self, host: str, port: int, username: str, base_path: str, settings: SftpSettings
    ) -> None:
        if not host or not username:
            raise ValueError("an SFTP drop needs a host and a user name")
        if not 0 < port < 65536:
            raise ValueError(f"bad SFTP port {port}")
        if ".." in base_path.split("/"):
            raise ValueError(f"SFTP base path {base_path!r} must not contain '..'")
        self.host = host
        self.port = port
        self.username = username
        self.base_path = base_path.rstrip("/") or ("/" if base_path.startswith("/") else ".")
        self.settings = settings
        self._pins = parse_host_key_pins(settings.host_key) if settings.host_key else ()
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._private_key: paramiko.PKey | None = None
        self._fsync_supported = True
        self._home: str | None = None  # the login folder, canonical (for a relative base path)

    @classmethod
    def from_url(cls, url: str, settings: SftpSettings) -> SftpDrop:
        """Build from ``sftp://user@host[:port]/base/path`` (percent-encoding allowed)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "sftp":
            raise ValueError(f"not an sftp:// URL: {url!r}")
        if parts.password is not None:
            raise ValueError("put the SFTP password in SftpSettings, never in the URL")
        if parts.query or parts.fragment:
            raise ValueError("an sftp:// drop URL takes no query or fragment")
        username = urllib.parse.unquote(parts.username or "")
        host = parts.hostname or ""
        port = parts.port or 22  # .port raises ValueError on a malformed port
        base_path = urllib.parse.unquote(parts.path) or "."
        return cls(host, port, username, base_path, settings)

    @property
    def url(self) -> str:
        """Where this drop is, without secrets (for logs and error messages)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sftp://{self.username}@{host}:{self.port}{self.base_path}"

    def __repr__(self) -> str:
        return f"SftpDrop({self.url!r})"

    # -- connection -------------------------------------------------------------------------

    def _is_connected(self) -> bool:
        return (
            self._sftp is not None and self._transport is not None and self._transport.is_active()
        )

    def _disconnect(self) -> None:
        sftp, transport = self._sftp, self._transport
        self._sftp = self._transport = None
        self._home = None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()

    def _client(self) -> paramiko.SFTPClient:
        """The open SFTP session, connecting (or reconnecting) if needed."""
        if self._is_connected():
            assert self._sftp is not None
            return self._sftp
        self._disconnect()
        if not self._pins:
            # No trust on first use: without a pin we do not even open a socket.
            raise HostKeyMismatch(f"{self.url}: no host key is pinned; refusing to connect")
        s = self.settings
        try:
            sock = socket.create_connection((self.host, self.port), timeout=s.connect_timeout)
        except OSError as exc:  # refused, timed out, no route, DNS: may all pass
            raise DropUnavailable(f"cannot connect to {self.url}: {exc}") from exc
        # SFTP is request/response; without this, Nagle plus delayed ACKs stall every write.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        try:
            self._handshake(transport)
            self._authenticate(transport)
            sftp = paramiko.SFTPClient.from_transport(transport)
            channel = sftp.get_channel() if sftp is not None else None
            if sftp is None or channel is None:
                raise DropUnavailable(f"{self.url}: the server opened no SFTP session")
            channel.settimeout(s.read_timeout)
        except BaseException as exc:
            transport.close()
            if isinstance(exc, DropError) or not isinstance(exc, Exception):
                raise
            raise self._connect_error(exc) from exc
        self._transport, self._sftp = transport, sftp
        log.info("connected to %s", self.url)
        return sftp

    def _connect_error(self, exc: Exception) -> DropError:
        if isinstance(exc, paramiko.AuthenticationException):
            return DropUnavailable(
                f"{self.url}: authentication as {self.username!r} refused", permanent=True
            )
        if isinstance(exc, paramiko.ssh_exception.IncompatiblePeer):
            if "host key" in str(exc):
                return HostKeyMismatch(
                    f"{self.url}: the server offers no host key of the pinned type(s) "
                    f"{sorted({p.key_type for p in self._pins if p.key_type})}"
                )
            return DropUnavailable(f"{self.url}: incompatible SSH server: {exc}", permanent=True)
        # Banner/negotiation errors, a dropped socket, EOF: the server or network may recover.
        return DropUnavailable(f"{self.url}: SSH connection failed: {exc}")

    def _handshake(self, transport: paramiko.Transport) -> None:
        s = self.settings
        transport.banner_timeout = s.connect_timeout
        transport.handshake_timeout = s.connect_timeout
        transport.auth_timeout = s.connect_timeout
        wanted = self._wanted_key_types()
        if wanted:
            options = transport.get_security_options()
            offered = [t for t in options.key_types if t in wanted]
            if offered:
                options.key_types = offered
        done = threading.Event()
        transport.start_client(event=done)
        if not done.wait(s.connect_timeout + 1):
            raise DropUnavailable(f"{self.url}: SSH negotiation timed out")
        if not transport.is_active():
            raise transport.get_exception() or paramiko.SSHException("negotiation failed")
        key = transport.get_remote_server_key()
        if not any(pin.matches(key) for pin in self._pins):
            blob = key.asbytes()
            raise HostKeyMismatch(
                f"{self.url}: host key {key.get_name()} {fingerprint(blob)} is not the pinned "
                f"key; if verified out of band, pin: {key.get_name()} {key.get_base64()}"
            )

    def _wanted_key_types(self) -> set[str]:
        """Host key algorithms to ask for; empty means any (a fingerprint-only pin)."""
        wanted: set[str] = set()
        for pin in self._pins:
            if pin.key_type is None:
                return set()
            wanted.update(_HOSTKEY_ALGORITHMS.get(pin.key_type, (pin.key_type,)))
        return wanted

    def _load_key(self) -> paramiko.PKey | None:
        s = self.settings
        if self._private_key is None and (s.private_key_path or s.private_key_pem):
            try:
                if s.private_key_path is not None:
                    text = Path(s.private_key_path).read_text()
                else:
                    assert s.private_key_pem is not None
                    text = s.private_key_pem
                self._private_key = _load_private_key(text, s.private_key_passphrase)
            except (OSError, ValueError, TypeError, paramiko.SSHException) as exc:
                raise DropUnavailable(
                    f"{self.url}: cannot load the private key: {exc}", permanent=True
                ) from exc
        return self._private_key

    def _authenticate(self, transport: paramiko.Transport) -> None:
        key = self._load_key()
        password = self.settings.password
        if key is None and password is None:
            raise DropUnavailable(f"{self.url}: no password or key configured", permanent=True)
        if key is not None:
            try:
                transport.auth_publickey(self.username, key)
            except paramiko.AuthenticationException:
                if password is None:
                    raise
        if not transport.is_authenticated() and password is not None:
            transport.auth_password(self.username, password)
        if not transport.is_authenticated():
            # e.g. the server wants a second factor after the key
            raise DropUnavailable(f"{self.url}: authentication incomplete", permanent=True)

    # -- paths and error mapping ------------------------------------------------------------

    def _dir(self, folder: str) -> str:
        return posixpath.join(self.base_path, validate_folder(folder))

    def _path(self, folder: str, name: str) -> str:
        return posixpath.join(self._dir(folder), validate_name(name))

    @contextlib.contextmanager
    def _remote(self, what: str) -> Iterator[paramiko.SFTPClient]:
        """Yield the SFTP session and turn failures into DropError with ``permanent`` set."""
        sftp = self._client()
        try:
            yield sftp
        except DropError:
            raise
        except (paramiko.SSHException, EOFError, TimeoutError, ConnectionError) as exc:
            self._disconnect()  # the session is in an unknown state; start afresh next time
            raise DropUnavailable(f"{what}: connection lost: {exc}") from exc
        except OSError as exc:
            if not self._is_connected():
                self._disconnect()
                raise DropUnavailable(f"{what}: connection lost: {exc}") from exc
            if exc.errno == errno.ENOENT:
                raise DropFileNotFound(f"{what}: no such file") from exc
            raise DropError(
                f"{what}: {exc.strerror or exc}", permanent=exc.errno in _PERMANENT_ERRNOS
            ) from exc

    @staticmethod
    def _lexists(sftp: paramiko.SFTPClient, path: str) -> bool:
        try:
            sftp.lstat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def _fsync(self, sftp: paramiko.SFTPClient, handle: object) -> None:
        """Ask the server to fsync an open file (OpenSSH's fsync@openssh.com extension).

        paramiko has no public call for it, so we send the extended request through its internal
        ``_request`` (the same way its own ``posix_rename`` does). If that ever disappears, or the
        server does not offer the extension, we go on without: the size check after upload still
        guards against a short file, only crash durability on the server is weaker.
        """
        if not self._fsync_supported:
            return
        request: Callable[..., object] | None = getattr(sftp, "_request", None)
        if request is None:
            self._fsync_supported = False
            return
        try:
            request(CMD_EXTENDED, "fsync@openssh.com", handle)
        except OSError as exc:
            if "unsupported" not in str(exc).lower():
                raise
            log.info("%s does not support fsync@openssh.com; writes are not fsynced", self.url)
            self._fsync_supported = False

    def _require_base(self, sftp: paramiko.SFTPClient) -> None:
        # The region's server decides where the account may write: a missing base is permanent.
        try:
            base = sftp.lstat(self.base_path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            raise DropUnavailable(f"{self.url}: base path does not exist", permanent=True) from exc
        if base.st_mode is not None and stat.S_ISLNK(base.st_mode):
            raise DropUnavailable(
                f"{self.url}: base path is a symbolic link: refused (configure the real path)",
                permanent=True,
            )
        if base.st_mode is None or not stat.S_ISDIR(base.st_mode):
            raise DropUnavailable(f"{self.url}: base path is not a directory", permanent=True)
        self._require_real(sftp, None)

    def _absolute(self, sftp: paramiko.SFTPClient, folder: str | None) -> str:
        """The absolute path the hub means by ``folder`` (None: the base path), normalised."""
        base = self.base_path
        if not base.startswith("/"):
            if self._home is None:
                self._home = sftp.normalize(".")
            base = posixpath.join(self._home, base)
        return posixpath.normpath(base if folder is None else posixpath.join(base, folder))

    def _require_real(self, sftp: paramiko.SFTPClient, folder: str | None) -> None:
        """Refuse ``folder`` (None: the base path) unless every component from the server's root
        down is a real directory: a symbolic link anywhere would point the hub elsewhere."""
        wanted = self._absolute(sftp, folder)
        where = f"{self.url}/{folder}" if folder else self.url
        if self._rename_refuses_existing():
            # OpenSSH's realpath resolves every link: the answer is the path asked for only if
            # there is none on the way.
            real = sftp.normalize(wanted)
            if real != wanted:
                raise DropError(
                    f"{where} is reached through a symbolic link ({wanted} is really {real}): "
                    "refused (the folders of a drop must be real directories)",
                    permanent=True,
                )
            return
        here = "/"
        for part in wanted.strip("/").split("/"):
            here = posixpath.join(here, part)
            attrs = sftp.lstat(here)
            if attrs.st_mode is None or not stat.S_ISDIR(attrs.st_mode):
                raise DropError(
                    f"{where}: {here} is a symbolic link or not a directory: refused (the "
                    "folders of a drop must be real directories)",
                    permanent=True,
                )

    def _real_folder(self, sftp: paramiko.SFTPClient, folder: str) -> str:
        """``folder``'s path on the server, after :meth:`_require_real` (before every use)."""
        validate_folder(folder)
        self._require_real(sftp, folder)
        return self._dir(folder)

    # -- the Drop operations ----------------------------------------------------------------

    def ensure_layout(self) -> None:
        """Create missing layout folders; the base path itself must already exist."""
        with self._remote(f"cannot create layout in {self.url}") as sftp:
            self._require_base(sftp)
            for folder in FOLDERS:
                path = posixpath.join(self.base_path, folder)
                if not self._lexists(sftp, path):
                    try:
                        sftp.mkdir(path)
                    except OSError:
                        if not self._lexists(sftp, path):  # another hub node may have made it
                            raise
                self._require_real(sftp, folder)

    def write_atomic(self, folder: str, name: str, data: bytes) -> bool:
        """Upload to a dot temp name, fsync, verify the size, rename without overwriting."""
        final = self._path(folder, name)
        tmp = posixpath.join(self._dir(folder), temp_name(name))
        with self._remote(f"cannot write {self.url}/{folder}/{name}") as sftp:
            self._real_folder(sftp, folder)
            # OpenSSH's rename refuses an existing target atomically (link + unlink), so asking
            # first would only cost a round trip per file on the delivery hot path. Other servers
            # may emulate rename carelessly; for them the early check at least keeps a retry
            # from uploading and renaming over a file that is already there.
            if not self._rename_refuses_existing() and self._lexists(sftp, final):
                return False
            renamed = False
            try:
                # "x": O_EXCL, so a temp name can never collide with anything.
                with sftp.open(tmp, "wx") as f:
                    # Not pipelined: each chunk is acknowledged, so a failed write raises here
                    # rather than being swallowed at close.
                    f.write(data)
                    f.flush()
                    self._fsync(sftp, f.handle)
                size = sftp.stat(tmp).st_size
                if size != len(data):
                    raise DropError(f"short upload: {size} of {len(data)} bytes")
                try:
                    sftp.rename(tmp, final)  # SFTPv3 rename: fails if final exists
                except OSError:
                    if self._lexists(sftp, final):
                        return False
                    raise
                renamed = True
                return True
            finally:
                if not renamed:
                    with contextlib.suppress(Exception):
                        sftp.remove(tmp)

    def _rename_refuses_existing(self) -> bool:
        """Whether the server is OpenSSH, whose SFTP rename never replaces an existing file."""
        transport = self._transport
        version = transport.remote_version if transport is not None else ""
        return isinstance(version, str) and "OpenSSH_" in version

    def exists(self, folder: str, name: str) -> bool:
        """Whether ``folder/name`` exists on the server."""
        path = self._path(folder, name)
        with self._remote(f"cannot stat {self.url}/{folder}/{name}") as sftp:
            try:
                self._real_folder(sftp, folder)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                return False  # no such folder: no such file
            return self._lexists(sftp, path)

    def list_files(self, folder: str) -> list[DropFile]:
        """Regular files only; dot-files, directories, links and unsafe names are skipped."""
        with self._remote(f"cannot list {self.url}/{folder}") as sftp:
            entries = sftp.listdir_attr(self._real_folder(sftp, folder))
        files: list[DropFile] = []
        for attr in entries:
            name = attr.filename
            if not isinstance(name, str):  # paramiko hands back bytes it cannot decode as UTF-8
                log.warning("ignoring a non-UTF-8 name in %s/%s", self.url, folder)
                continue
            if name.startswith("."):
                continue
            if attr.st_mode is None or not stat.S_ISREG(attr.st_mode):
                continue
            problem = name_problem(name)
            if problem is not None:
                log.warning("ignoring %r in %s/%s: %s", name, self.url, folder, problem)
                continue
            files.append(
                DropFile(
                    name=name,
                    size=attr.st_size or 0,
                    mtime=datetime.fromtimestamp(attr.st_mtime or 0, tz=UTC),
                )
            )
        files.sort(key=lambda f: f.name)
        return files

    def read(self, folder: str, name: str, max_bytes: int = DEFAULT_MAX_READ_BYTES) -> bytes:
        """Download a file, refusing (before transferring it) one larger than ``max_bytes``."""
        check_max_bytes(max_bytes)
        path = self._path(folder, name)
        with self._remote(f"cannot read {self.url}/{folder}/{name}") as sftp:
            self._real_folder(sftp, folder)
            seen = sftp.lstat(path)  # SFTP's open follows links: look first, compare after
            if seen.st_mode is None or not stat.S_ISREG(seen.st_mode):
                raise DropError(
                    f"{self.url}/{folder}/{name} is not a regular file (a link is refused)",
                    permanent=True,
                )
            with sftp.open(path, "rb") as f:
                data = self._read_open(f, seen, f"{self.url}/{folder}/{name}", max_bytes)
        if len(data) > max_bytes:
            raise DropFileTooLarge(f"{self.url}/{folder}/{name} is larger than {max_bytes} bytes")
        return data

    @staticmethod
    def _read_open(f: paramiko.SFTPFile, seen: Any, where: str, max_bytes: int) -> bytes:
        """Read an opened file that must be the one ``seen`` (lstat) described."""
        opened = f.stat()
        same = ("st_mode", "st_uid", "st_gid", "st_size", "st_mtime")
        if any(getattr(opened, a) != getattr(seen, a) for a in same):
            # Replaced (by a link, say) between the look and the open: not what was listed.
            raise DropError(f"{where} changed while it was opened: refused")
        size = opened.st_size or 0
        if size > max_bytes:
            raise DropFileTooLarge(f"{where}: {size} > {max_bytes} bytes")
        if size:
            f.prefetch(size)  # pipelined reads: one round trip per window, not per 32 KiB
        data: bytes = f.read(max_bytes + 1)  # the file may have grown since stat
        return data

    def move(self, folder: str, name: str, to_folder: str, to_name: str | None = None) -> None:
        """Rename on the server; SFTPv3 rename refuses to replace an existing target."""
        source = self._path(folder, name)
        target = self._path(to_folder, name if to_name is None else to_name)
        with self._remote(f"cannot move {source} to {target} on {self.url}") as sftp:
            self._real_folder(sftp, folder)
            if to_folder != folder:
                self._real_folder(sftp, to_folder)
            if self._lexists(sftp, target):
                # Report a vanished source first, as the local drop does: for a second hub
                # node racing on the same pick-up, "someone else took it" is the real story.
                if not self._lexists(sftp, source):
                    raise DropFileNotFound(f"{self.url}: {source} does not exist")
                raise DropFileExists(f"{self.url}: {target} already exists")
            try:
                sftp.rename(source, target)
            except OSError as exc:
                if not self._lexists(sftp, source):
                    raise DropFileNotFound(f"{self.url}: {source} does not exist") from exc
                if self._lexists(sftp, target):
                    raise DropFileExists(f"{self.url}: {target} already exists") from exc
                raise

    def remove(self, folder: str, name: str) -> None:
        """Remove ``folder/name``; already gone is fine."""
        path = self._path(folder, name)
        with self._remote(f"cannot remove {self.url}/{folder}/{name}") as sftp:
            try:
                self._real_folder(sftp, folder)
                sftp.remove(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise

    def check(self) -> None:
        """Connect (or reuse the connection) and make sure the base path is a directory."""
        with self._remote(f"cannot check {self.url}") as sftp:
            self._require_base(sftp)

    def close(self) -> None:
        """Close the SSH connection; a later call reconnects."""
        self._disconnect()
