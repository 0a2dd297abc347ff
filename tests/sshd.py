"""A real OpenSSH server for SFTP tests, as a session-scoped pytest fixture.

Why a real sshd rather than paramiko's server classes: regions run OpenSSH (or something that
must behave like it), and the behaviours the hub relies on — rename refusing to replace a file,
``fsync@openssh.com``, chroot, how a refused password or an unknown host key looks on the wire —
are OpenSSH's, not paramiko's.

What the ``sftp_server`` fixture sets up (once per test session):

* a throw-away directory under ``/run`` (``HUB_TEST_SSHD_DIR`` overrides the parent). sshd
  insists that every component of a ``ChrootDirectory`` is root-owned and not group/world
  writable, which rules out anything below ``/tmp``;
* a fresh ed25519 host key and a client key made with ``ssh-keygen``;
* the system user ``hubsftp`` (created with ``useradd --system`` if missing, login shell
  nologin) with a random password set by ``chpasswd``: with ``UsePAM no`` sshd checks
  ``/etc/shadow`` itself, and an account without a password hash counts as locked, which would
  refuse key logins too;
* ``sshd -D -e -f <config>`` on 127.0.0.1 and a free port, the user chrooted into
  ``<dir>/chroot`` with ``ForceCommand internal-sftp``; ``StrictModes no`` because the
  authorized_keys file lives in the throw-away directory instead of a home directory;
* ``<dir>/chroot/drop`` owned by the user: :meth:`SftpServer.new_base` makes one sub-folder per
  test there so tests do not see each other's files.

It needs root and ``/usr/sbin/sshd``. Without them the tests are skipped, except on CI
(``CI=true``), where a missing server must not silently turn the SFTP tests into skips.

Use it from a test module with ``from tests.sshd import sftp_server  # noqa: F401`` or from the
root conftest with ``pytest_plugins = ["tests.sshd"]``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
USER = "hubsftp"
NOLOGIN = "/usr/sbin/nologin"


def _unavailable(reason: str) -> None:
    """Skip locally, fail loudly on CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"SFTP test server unavailable on CI: {reason}", pytrace=False)
    pytest.skip(f"SFTP test server unavailable: {reason}")


def free_port() -> int:
    """A free TCP port on loopback (for servers the tests start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def generate_key(directory: Path, name: str, key_type: str = "ed25519") -> tuple[Path, str]:
    """Make a key pair with ssh-keygen; returns the private key path and the public key line."""
    path = directory / name
    bits = ["-b", "2048"] if key_type == "rsa" else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, *bits, "-N", "", "-C", name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path, path.with_suffix(".pub").read_text().strip()


def _shared_password() -> str:
    """The test user's password, shared by concurrent test sessions on this machine.

    Every session chrooting the same system user must agree on its password, or one session's
    chpasswd breaks another's logins. It is random per boot and readable by root only, because
    the machine's own sshd (if any) would accept it too.
    """
    path = Path("/run/hub-test-sshd.password")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the creator may not have written it yet
            password = path.read_text().strip()
            if password:
                return password
            time.sleep(0.02)
        raise RuntimeError(f"{path} stays empty") from None
    password = secrets.token_urlsafe(16)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


def _ensure_user(password: str) -> pwd.struct_passwd:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                NOLOGIN,
                USER,
            ],
            check=True,
            capture_output=True,
        )
    subprocess.run(["chpasswd"], input=f"{USER}:{password}\n", text=True, check=True)
    return pwd.getpwnam(USER)


@dataclass
class SftpServer:
    """A running sshd for tests; see the module docstring."""

    workdir: Path
    host: str
    port: int
    username: str
    password: str
    private_key_path: Path
    host_key_line: str  # "ssh-ed25519 AAAA... comment", exactly what a region would give us
    chroot: Path  # on disk; the SFTP path "/" inside the chroot
    base_dir: Path  # on disk: <chroot>/drop, writable by the user
    base_path: str  # the same folder as seen over SFTP: "/drop"
    uid: int
    gid: int
    config_path: Path
    log_path: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        """Whether the listening sshd process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start sshd and wait until it answers with an SSH banner."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited early:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not come up on port {self.port}:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the listening sshd (sessions already open keep their own processes)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Server down for the duration of the block, and up again afterwards whatever happens."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def new_base(self, name: str | None = None) -> tuple[str, Path]:
        """A fresh, empty folder owned by the SFTP user: (path over SFTP, path on disk)."""
        name = name or secrets.token_hex(6)
        on_disk = self.base_dir / name
        on_disk.mkdir()
        os.chown(on_disk, self.uid, self.gid)
        return f"{self.base_path}/{name}", on_disk

    def session_pids(self) -> list[int]:
        """Processes serving this server's open sessions as the test user (not other servers')."""
        if self._proc is None:
            return []
        out = subprocess.run(
            ["ps", "-e", "-o", "pid=,ppid=,user="], capture_output=True, text=True, check=True
        ).stdout
        rows = [line.split() for line in out.splitlines() if line.strip()]
        children: dict[int, list[int]] = {}
        users: dict[int, str] = {}
        for pid, ppid, user in rows:
            children.setdefault(int(ppid), []).append(int(pid))
            users[int(pid)] = user
        found: list[int] = []
        todo = [self._proc.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                todo.append(child)
                if users.get(child) == self.username:
                    found.append(child)
        return found

    def accepted_logins(self) -> int:
        """How many logins sshd has accepted so far (counts connections the hub made)."""
        return self.log_path.read_text(errors="replace").count("Accepted ")

    def log_tail(self, lines: int = 30) -> str:
        """The end of sshd's log, for failure messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _write_config(server: SftpServer, host_key: Path, authorized_keys: Path, extra: str) -> None:
    server.config_path.write_text(
        f"""\
ListenAddress {server.host}
Port {server.port}
HostKey {host_key}
PidFile {server.workdir / "sshd.pid"}
AuthorizedKeysFile {authorized_keys}
UsePAM no
StrictModes no
PermitRootLogin no
AllowUsers {USER}
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
LogLevel VERBOSE
MaxStartups 50
Subsystem sftp internal-sftp
{extra}
Match User {USER}
    ChrootDirectory {server.chroot}
    ForceCommand internal-sftp
    AllowTcpForwarding no
    X11Forwarding no
"""
    )


def _start_server(workdir: Path) -> SftpServer:
    # The user reads authorized_keys from here (sshd drops privileges for that).
    workdir.chmod(0o755)
    password = _shared_password()
    user = _ensure_user(password)
    host_key, host_key_line = generate_key(workdir, "ssh_host_ed25519_key")
    client_key, client_pub = generate_key(workdir, "client_ed25519")
    authorized_keys = workdir / "authorized_keys"
    authorized_keys.write_text(client_pub + "\n")
    authorized_keys.chmod(0o644)
    chroot = workdir / "chroot"
    chroot.mkdir(mode=0o755)
    base_dir = chroot / "drop"
    base_dir.mkdir(mode=0o755)
    os.chown(base_dir, user.pw_uid, user.pw_gid)
    # sshd refuses to start without its privilege-separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    server = SftpServer(
        workdir=workdir,
        host="127.0.0.1",
        port=free_port(),
        username=USER,
        password=password,
        private_key_path=client_key,
        host_key_line=host_key_line,
        chroot=chroot,
        base_dir=base_dir,
        base_path="/drop",
        uid=user.pw_uid,
        gid=user.pw_gid,
        config_path=workdir / "sshd_config",
        log_path=workdir / "sshd.log",
    )
    # OpenSSH >= 9.8 throttles sources with failed logins, which our wrong-password tests
    # would trigger against every later test; older versions do not know the option.
    _write_config(server, host_key, authorized_keys, "PerSourcePenalties no")
    probe = subprocess.run(
        [SSHD, "-t", "-f", str(server.config_path)], capture_output=True, text=True
    )
    if probe.returncode != 0:
        _write_config(server, host_key, authorized_keys, "")
    server.start()
    return server


@pytest.fixture(scope="session")
def sftp_server() -> Iterator[SftpServer]:
    """A real OpenSSH SFTP server on 127.0.0.1 for the whole test session."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        _unavailable(f"{SSHD} or ssh-keygen is not installed (apt-get install openssh-server)")
    if os.geteuid() != 0:
        _unavailable("starting sshd with a chrooted test user needs root")
    parent = Path(os.environ.get("HUB_TEST_SSHD_DIR", "/run"))
    workdir = Path(tempfile.mkdtemp(prefix="hub-test-sshd-", dir=parent))
    server: SftpServer | None = None
    try:
        server = _start_server(workdir)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
