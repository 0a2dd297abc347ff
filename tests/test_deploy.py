"""The deployment in ``deploy/``, run for real on loopback (issue #19).

What runs, each from its file in ``deploy/`` (paths, ports and account names rewritten for the
test, every rewrite checked to have matched so the files cannot drift from what is tested):

* two PostgreSQL 15 clusters of the test's own (``initdb``, ``pg_basebackup -R``, free ports, a
  folder under ``/run``), the second a synchronous streaming standby; roles from
  ``postgres/roles.sql``; the hub migrated by ``agenthub-admin db upgrade`` as the owner role;
* two web nodes (``systemd/agenthub-web@.service``: gunicorn with ``gunicorn.conf.py``) and two
  workers (``systemd/agenthub-worker.service``) as an unprivileged user, with the environment of
  ``agenthub.env.example`` and the app role's database URL listing both clusters;
* nginx with ``nginx/agenthub.conf`` (Debian's package, installed if missing);
* OpenSSH's sshd with ``sftp/agenthub-sftp.conf`` and accounts made by ``sftp-account``.

The machine's shared PostgreSQL is never touched by the deployment tests (the in-process
leadership tests at the top use the usual per-test databases on it, like the rest of the suite).
Needs root (users, chroot, nginx); without it, or without a package that cannot be installed,
the module is skipped on a laptop and fails under ``CI=true``.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import paramiko
import psycopg2
import pytest
import requests

from hub.clock import swedish_today
from hub.context import Hub
from hub.contract.names import ENDPOINT_PATH, HDR_CORRELATION_ID, SOAP_ACTION
from hub.contract.personnummer import generate
from hub.contract.samples import sample_information
from hub.contract.serialise import build_request_envelope
from hub.db import region_schema_name
from hub.jobs.config import JobSettings
from hub.jobs.leader import LOCK_KEY, Elector, lead_scheduler, leadership_for
from hub.jobs.worker import build_scheduler
from hub.logs import JsonFormatter, MaskPersonnummer
from hub.producer.identity import hsa_id_from_pem
from tests.conftest import end_database_sessions
from tests.pki import Pki, make_pki
from tests.sshd import free_port, generate_key

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PG_BIN = Path(os.environ.get("AGENTHUB_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
ON_CI = os.environ.get("CI", "").lower() == "true"
LAN_A, LAN_B = "14", "01"
PLATFORM_HSA_ID = "SE2321000016-NTJP"  # the one AGENTHUB_ALLOWED_CONSUMERS in the template names
TAKEOVER_LIMIT_S = 30.0
REGIONS = ((LAN_A, "SE2321000131", "Region A"), (LAN_B, "SE2321000016", "Region B"))


def _unavailable(reason: str) -> None:
    """Skip on a laptop, fail loudly on CI: a missing tool must not turn the proof into a skip."""
    if ON_CI:
        pytest.fail(f"deployment test cannot run on CI: {reason}", pytrace=False)
    pytest.skip(f"deployment test cannot run: {reason}")


# --- Scheduler leadership, in process, on SQLite and PostgreSQL -------------------------------


def _electors(hub: Hub, n: int = 2) -> list[Elector]:
    return [Elector(leadership_for(hub, f"w{i}"), f"w{i}", poll_s=3600) for i in range(n)]


def test_exactly_one_worker_leads_and_a_spare_takes_over(hub: Hub) -> None:
    """Two electors on one database: one leads; when it gives up, the other's next poll leads."""
    first, second = _electors(hub)
    try:
        assert first.poll() is True
        assert second.poll() is False
        assert (first.check(), second.check()) == (True, False)
        first.stop()
        assert second.poll() is True
        assert second.check() is True
    finally:
        first.stop()
        second.stop()


def test_a_fenced_job_does_nothing_without_the_lead(hub: Hub) -> None:
    """The wrapper runs the job only while its worker leads; arguments pass through."""
    leader, spare = _electors(hub)
    runs: list[str] = []
    try:
        leader.poll()
        spare.poll()
        leader.fence("j", runs.append)("leader")
        spare.fence("j", runs.append)("spare")
        assert runs == ["leader"]
    finally:
        leader.stop()
        spare.stop()


def test_a_lost_lock_session_ends_the_lead_and_one_worker_takes_it(
    hub: Hub, postgresql_only: None
) -> None:
    """PostgreSQL: the leader's lock session ends (a failover or restart, as the worker sees it):
    its next check says it no longer leads, and then exactly one of the two takes the lead."""
    first, second = _electors(hub)
    try:
        assert first.poll() and not second.poll()
        end_database_sessions(hub.settings.database_url)
        assert first.check() is False
        outcome = [first.poll(), second.poll()]
        assert sorted(outcome) == [False, True]
    finally:
        first.stop()
        second.stop()


def test_the_worker_fences_every_job_but_the_heartbeat(hub: Hub) -> None:
    """``lead_scheduler`` wraps the real scheduler's jobs; a worker that cannot lead stands by."""
    scheduler = build_scheduler(hub, JobSettings(), "w-spare")
    holder = leadership_for(hub, "w-holder")
    assert holder.try_acquire()
    elector = lead_scheduler(hub, scheduler, "w-spare", poll_s=3600)
    try:
        assert elector.leading is False
        jobs = {job.id: job.func.__name__ for job in scheduler.get_jobs()}
        fenced = {job_id for job_id, name in jobs.items() if name.startswith("fenced_")}
        assert fenced == set(jobs) - {"heartbeat"}
        assert {"deliver", "pickup", "purge", "outbox.send"} <= fenced
    finally:
        elector.stop()
        holder.release()


def test_json_log_lines_carry_no_personnummer() -> None:
    """The journal's format: one JSON object per record, personnummer masked, traceback too."""
    import logging

    pnr = generate(random.Random(7))
    logger = logging.getLogger("tests.deploy.json")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "pnr %s", (pnr,), None)
    try:
        raise ValueError(f"bad {pnr}")
    except ValueError:
        record.exc_info = sys.exc_info()
    MaskPersonnummer().filter(record)
    line = JsonFormatter().format(record)
    parsed = json.loads(line)
    assert "\n" not in line
    assert parsed["level"] == "warning" and parsed["logger"] == "tests.deploy.json"
    assert parsed["message"].startswith("pnr ") and "ValueError" in parsed["exception"]
    assert pnr not in line and pnr[2:] not in line


# --- The systemd units ------------------------------------------------------------------------

UNITS = {
    "agenthub-web@8080.service": "agenthub-web@.service",
    "agenthub-worker.service": "agenthub-worker.service",
    "agenthub-migrate.service": "agenthub-migrate.service",
    "agenthub-ntjp-sim.service": "agenthub-ntjp-sim.service",
}


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as section → (key, value) pairs in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def test_units_verify_and_are_hardened(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say, and the offline security exposure of each
    unit is low: a dedicated user, a read-only system, no new privileges, a private /tmp."""
    if shutil.which("systemd-analyze") is None:
        _unavailable("systemd-analyze is not installed (Debian package systemd)")
    copies = []
    for name, source in UNITS.items():
        text = (DEPLOY / "systemd" / source).read_text()
        # verify checks that ExecStart's program exists: point it at this checkout's venv.
        copy = tmp_path / name
        copy.write_text(text.replace("/opt/agenthub", str(REPO)))
        copies.append(copy)
        service = dict(read_unit(DEPLOY / "systemd" / source)["Service"])
        assert service["User"] in ("agenthub", "agenthub-admin"), name
        for key, value in {
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "PrivateTmp": "yes",
            "ProtectHome": "yes",
            "CapabilityBoundingSet": "",
        }.items():
            assert service.get(key) == value, f"{name}: {key}"
    verify = subprocess.run(
        ["systemd-analyze", "verify", *map(str, copies)], capture_output=True, text=True
    )
    assert verify.returncode == 0 and not verify.stdout.strip(), verify.stdout + verify.stderr
    assert not [line for line in verify.stderr.splitlines() if "agenthub" in line], verify.stderr
    for copy in copies:
        security = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", str(copy)],
            capture_output=True,
            text=True,
        )
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
        assert found, security.stdout + security.stderr
        assert float(found.group(1)) <= 2.0, f"{copy.name}: {found.group(0)}"
    worker = dict(read_unit(DEPLOY / "systemd" / "agenthub-worker.service")["Service"])
    assert worker["ReadWritePaths"] == "/srv/agenthub/sftp"  # the drops, and nothing else


# --- The stack --------------------------------------------------------------------------------


def _ensure_packages() -> None:
    """Debian's nginx and openssh-server (and systemd-analyze's package), installed if missing."""
    wanted = {"nginx": "/usr/sbin/nginx", "openssh-server": "/usr/sbin/sshd"}
    missing = [package for package, binary in wanted.items() if not Path(binary).exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        _unavailable(f"{' '.join(missing)} missing and not root to install them")
    # A package's postinst would start its daemon on the machine's own ports; policy-rc.d is
    # Debian's way to say "do not start services" (container images already ship one).
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        install = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env,
            capture_output=True,
            text=True,
        )
    finally:
        if made_policy:
            policy.unlink()
    still = [package for package, binary in wanted.items() if not Path(binary).exists()]
    if still:
        _unavailable(f"apt-get install {' '.join(still)} failed: {install.stderr[-2000:]}")


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, raising with its output when it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise AssertionError(
            f"{shlex.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def _wait(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.2) -> float:
    """Wait until ``check()``; return the seconds it took, fail with ``what`` after ``timeout``."""
    start = time.monotonic()
    last_error: Exception | None = None
    while True:
        try:
            if check():
                return time.monotonic() - start
        except Exception as exc:  # a service not up yet answers with all sorts of errors
            last_error = exc
        if time.monotonic() - start > timeout:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error!r})"
            )
        time.sleep(interval)


def in_region(lan: str, sql: str) -> str:
    """``sql`` with ``{schema}`` replaced by the region's schema name (checked two digits)."""
    return sql.format(schema=region_schema_name(lan))


def rewrite(text: str, changes: dict[str, str], where: str) -> str:
    """Replace each key by its value, insisting that every key occurs (files may not drift)."""
    for old, new in changes.items():
        assert old in text, f"{where} no longer contains {old!r}: update the test with the file"
        text = text.replace(old, new)
    return text


@dataclass
class Accounts:
    """System users and groups of this test run (unique names, removed at the end)."""

    suffix: str
    hub: str
    admin: str
    sftp_group: str
    region_prefix: str
    as_hub_user: bool = True  # False when this checkout cannot be read by an unprivileged user

    def region_user(self, lan: str) -> str:
        """The SFTP account of a region."""
        return f"{self.region_prefix}{lan}"

    @property
    def hub_ids(self) -> tuple[int, int]:
        """(uid, gid) of the hub's service user."""
        entry = pwd.getpwnam(self.hub)
        return entry.pw_uid, entry.pw_gid


def _useradd(name: str, *groups: str) -> None:
    if subprocess.run(["id", "-u", name], capture_output=True).returncode == 0:
        return
    extra = ["--groups", ",".join(groups)] if groups else []
    _run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            *extra,
            name,
        ]
    )


class Cluster:
    """A PostgreSQL cluster of the test's own, run as the postgres user."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.data = root / name
        self.port = free_port()
        self.log = root / f"{name}.log"

    def _pg(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return _run([str(PG_BIN / argv[0]), *argv[1:]], user="postgres", group="postgres")

    def configure(self, extra: str) -> None:
        """Append settings every cluster of the test has, plus ``extra``."""
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.data.parent}'\nmax_connections = 200\n"
                "shared_buffers = 32MB\nwal_level = replica\nmax_wal_senders = 5\n"
                "hot_standby = on\nlog_min_messages = warning\n" + extra
            )

    def initdb(self) -> None:
        """A new primary: trust for the superuser on loopback (the test's), SCRAM for the hub."""
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--locale=C")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host replication postgres 127.0.0.1/32 trust\n"
            "host agenthub,agenthub_copy agenthub_owner,agenthub_app 127.0.0.1/32 scram-sha-256\n"
        )
        self.configure("synchronous_standby_names = 'standby1'\nsynchronous_commit = on\n")

    def basebackup_from(self, primary: Cluster) -> None:
        """A synchronous standby of ``primary``: pg_basebackup -R writes primary_conninfo."""
        conninfo = f"host=127.0.0.1 port={primary.port} user=postgres application_name=standby1"
        self._pg("pg_basebackup", "-d", conninfo, "-D", str(self.data), "-R", "-X", "stream")
        # Once promoted it must not wait for a standby of its own that does not exist yet.
        self.configure("synchronous_standby_names = ''\n")

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop (``immediate``: as if the machine died)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def promote(self) -> None:
        """Promote a standby and wait until it accepts writes."""
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")

    @property
    def running(self) -> bool:
        """Whether the postmaster is up."""
        return (
            subprocess.run(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"],
                capture_output=True,
                user="postgres",
            ).returncode
            == 0
        )

    def connect(self, dbname: str = "postgres", user: str = "postgres", **kw: Any) -> Any:
        """An autocommit psycopg2 connection on loopback."""
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, dbname=dbname, user=user, connect_timeout=5, **kw
        )
        conn.autocommit = True
        return conn

    def query(self, sql: str, params: Any = None, dbname: str = "agenthub") -> list[Any]:
        """Rows of one statement, as the superuser."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            conn.close()


@dataclass
class Service:
    """One process started the way its systemd unit says (see :func:`service_from_unit`)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    user: str | None
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start in its own process group (so a node can be killed whole)."""
        ids: dict[str, Any] = {}
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            groups = [g for g in os.getgrouplist(self.user, entry.pw_gid) if g != entry.pw_gid]
            ids = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": groups}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                umask=0o027,  # the units' UMask=
                **ids,
            )

    @property
    def pid(self) -> int:
        """The main process id."""
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the whole process group: the node or worker dies at once, as with a crash."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (what systemd sends), then SIGKILL after the unit's grace."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_text(self) -> str:
        """What the process wrote to stdout and stderr (the journal, under systemd)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as systemd's EnvironmentFile= reads them."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def service_from_unit(
    unit: Path,
    *,
    instance: str = "",
    paths: dict[str, str],
    users: dict[str, str | None],
    extra_env: dict[str, str],
    log_path: Path,
) -> Service:
    """The process a unit describes: ExecStart, User, WorkingDirectory, the environment of its
    Environment= lines overridden by its EnvironmentFile= files (systemd's order), ``%i``."""
    service = read_unit(unit)["Service"]

    def expand(value: str) -> str:
        for old, new in paths.items():
            value = value.replace(old, new)
        return value.replace("%i", instance)

    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
    env.update(extra_env)
    for key, value in service:
        if key == "Environment":
            name, _, val = expand(value).partition("=")
            env[name] = val
    for key, value in service:
        if key == "EnvironmentFile":
            env.update(read_env_file(Path(expand(value))))
    values = dict(service)
    return Service(
        name=unit.name.replace("@", f"@{instance}"),
        argv=shlex.split(expand(values["ExecStart"])),
        env=env,
        cwd=Path(expand(values["WorkingDirectory"])),
        user=users[values["User"]],
        log_path=log_path,
    )


@dataclass
class Outcome:
    """One call of the load: its correlation id, and whether the hub acknowledged it (OK)."""

    correlation_id: str
    pnr: str
    acknowledged: bool
    at: float
    detail: str


class Load:
    """Calls through nginx with the platform certificate, from a few threads, until stopped."""

    def __init__(self, stack: Stack, threads: int = 3, lan: str = LAN_A) -> None:
        self.stack = stack
        self.lan = lan
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _loop(self, seed: int) -> None:
        rng = random.Random(secrets.randbits(32) + seed)
        session = self.stack.platform_session()
        while not self._stop.is_set():
            outcome = self.stack.call(session, self.lan, rng)
            with self._lock:
                self.outcomes.append(outcome)
            if not outcome.acknowledged:
                time.sleep(0.05)  # a failing hub is asked again soon, not in a hot loop

    def acknowledged_after(self, moment: float) -> int:
        """Calls answered OK that started after ``moment`` (time.monotonic)."""
        with self._lock:
            return sum(1 for o in self.outcomes if o.acknowledged and o.at > moment)


@dataclass
class Stack:
    """Everything the deployment tests share (built once for the module)."""

    base: Path
    accounts: Accounts
    pki: Pki
    primary: Cluster
    standby: Cluster
    owner_password: str
    app_password: str
    etc: Path
    soap_port: int
    workspace_port: int
    web_ports: list[int]
    webs: dict[int, Service]
    workers: list[Service]
    nginx: subprocess.Popen[bytes] | None
    nginx_dir: Path
    sshd: subprocess.Popen[bytes] | None
    sshd_port: int
    sshd_host_key: str
    region_keys: dict[str, Path]
    sftp_root: Path
    keys_dir: Path
    sftp_env: dict[str, str]
    make_web: Callable[[int], Service]
    make_worker: Callable[[int], Service]
    venv: Path
    sent_pnrs: list[str] = field(default_factory=list)
    _pnrs_seen: set[str] = field(default_factory=set)
    _pnr_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def db(self) -> Cluster:
        """The cluster that is primary now."""
        return self.primary if self.primary.running else self.standby

    @property
    def soap_url(self) -> str:
        """The producer's address through nginx."""
        return f"https://127.0.0.1:{self.soap_port}{ENDPOINT_PATH}"

    def platform_session(self) -> requests.Session:
        """A session with NTjP's client certificate, trusting the test CA."""
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the test CA
        session.cert = self.pki.platform.pair
        session.verify = str(self.pki.ca.cert_path)
        return session

    def call(
        self,
        session: requests.Session,
        lan: str,
        rng: random.Random,
        headers: dict[str, str] | None = None,
    ) -> Outcome:
        """One SOAP call with a fresh synthetic personnummer and correlation id.

        Fresh: never one sent before in this module, since the same woman's same record again is
        an identical resend, answered as the first and stored once, under the first's id."""
        with self._pnr_lock:
            pnr = generate(rng)
            while pnr in self._pnrs_seen:
                pnr = generate(rng)
            self._pnrs_seen.add(pnr)
            self.sent_pnrs.append(pnr)
        correlation_id = str(uuid.uuid4())
        body = build_request_envelope(
            lan, sample_information("move", pnr=pnr, sending_lan="05", today=swedish_today())
        )
        started = time.monotonic()
        try:
            response = session.post(
                self.soap_url,
                data=body,
                headers={
                    "Content-Type": "text/xml; charset=utf-8",
                    "SOAPAction": SOAP_ACTION,
                    HDR_CORRELATION_ID: correlation_id,
                    **(headers or {}),
                },
                timeout=40,
            )
        except requests.RequestException as exc:
            return Outcome(correlation_id, pnr, False, started, f"{type(exc).__name__}: {exc}")
        ok = response.status_code == 200 and b">OK</" in response.content
        return Outcome(correlation_id, pnr, ok, started, f"{response.status_code}")

    def stored(self, lan: str = LAN_A) -> dict[str, str]:
        """correlation id → sender HSA-id of every message stored for a region (on the primary)."""
        rows = self.db.query(
            in_region(lan, "SELECT correlation_id, sender_hsaid FROM {schema}.messages")
        )
        return {row[0]: row[1] for row in rows}

    def lock_holders(self, cluster: Cluster | None = None) -> list[int]:
        """Pids (in application_name) of the worker sessions holding the scheduler's lock."""
        rows = (cluster or self.db).query(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s",
            (LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF),
        )
        pids = []
        for (name,) in rows:
            found = re.match(r"agenthub worker (\d+) ", name)
            assert found, name
            pids.append(int(found.group(1)))
        return pids

    def pending(self, lan: str = LAN_A) -> int:
        """Messages of a region not yet delivered to its drop."""
        rows = self.db.query(
            in_region(
                lan, "SELECT count(*) FROM {schema}.messages WHERE delivery_state <> 'delivered'"
            )
        )
        return int(rows[0][0])

    def drop(self, lan: str) -> Path:
        """A region's drop folder on disk."""
        return self.sftp_root / self.accounts.region_user(lan) / "drop"

    def sftp(self, lan: str, user: str | None = None) -> paramiko.SFTPClient:
        """An SFTP session as a region's account (``user`` to try another account's name)."""
        transport = paramiko.Transport(("127.0.0.1", self.sshd_port))
        host_key = paramiko.Ed25519Key(data=base64.b64decode(self.sshd_host_key.split()[1]))
        key = paramiko.Ed25519Key.from_private_key_file(str(self.region_keys[lan]))
        try:
            transport.connect(
                hostkey=host_key, username=user or self.accounts.region_user(lan), pkey=key
            )
        except Exception:
            transport.close()
            raise
        client = paramiko.SFTPClient.from_transport(transport)
        assert client is not None
        return client

    def admin(self, *args: str) -> str:
        """``deploy/agenthub-admin ARGS`` (the owner role's CLI), output returned."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "AGENTHUB_ETC": str(self.etc),
            "AGENTHUB_HOME": str(REPO),
            "AGENTHUB_VENV": str(self.venv),
            "AGENTHUB_ADMIN_USER": self.accounts.admin if self.accounts.as_hub_user else "root",
        }
        return _run([str(DEPLOY / "agenthub-admin"), *args], env=env).stdout

    def sftp_account(self, *args: str) -> str:
        """``deploy/sftp-account ARGS`` with the test's paths and names."""
        return _run([str(DEPLOY / "sftp-account"), *args], env=self.sftp_env).stdout


def _free_id_base() -> int:
    """A base id such that base + 0..99 is no user's or group's id on this machine."""
    import grp

    taken = {u.pw_uid for u in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    # In random order: two test sessions on one machine must not pick the same range.
    for base in random.Random().sample(range(61000, 64000, 100), 30):
        if not taken & set(range(base, base + 100)):
            return base
    raise AssertionError("no free range of 100 ids between 61000 and 64000")


def _write_secret(path: Path, value: str, owner: str, group: str, mode: int) -> None:
    path.write_text(value + "\n")
    shutil.chown(path, owner, group)
    path.chmod(mode)


def _service_venv(base: Path, user: str) -> Path | None:
    """A venv of Debian's own python3, as deploy/README.md builds /opt/agenthub/.venv, that
    reads this checkout's installed packages; None when the hub's user cannot run it.

    The test's own venv may sit on an interpreter under a private home (pyenv under /root),
    which no service user can execute; Debian's interpreter of the same minor version can use
    the same packages."""
    system = Path("/usr/bin/python3")
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not system.exists():
        return None
    theirs = subprocess.run(
        [str(system), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if theirs != ours:
        return None
    venv = base / "opt-venv"
    if subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)]).returncode != 0:
        return None
    packages = REPO / ".venv" / "lib" / f"python{ours}" / "site-packages"
    site = venv / "lib" / f"python{ours}" / "site-packages"
    (site / "agenthub-test.pth").write_text(f"import site; site.addsitedir({str(packages)!r})\n")
    for script in ("agenthub", "gunicorn"):
        lines = (REPO / ".venv" / "bin" / script).read_text().splitlines()
        (venv / "bin" / script).write_text(
            "\n".join([f"#!{venv / 'bin' / 'python'}", *lines[1:]]) + "\n"
        )
        (venv / "bin" / script).chmod(0o755)
    entry = pwd.getpwnam(user)
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import hub.app, gunicorn"],
        capture_output=True,
        user=entry.pw_uid,
        group=entry.pw_gid,
        extra_groups=[],
        cwd="/",
    )
    return venv if probe.returncode == 0 else None


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Build the deployment (see the module docstring); tear it all down afterwards."""
    if os.geteuid() != 0:
        _unavailable("needs root: system users, a chroot, nginx and sshd")
    for tool in ("initdb", "pg_ctl", "pg_basebackup", "pg_dump", "pg_restore", "psql"):
        if not (PG_BIN / tool).exists():
            _unavailable(f"{PG_BIN / tool} is missing (Debian package postgresql-15)")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        _unavailable("no postgres system user to run the test's clusters as")
    _ensure_packages()

    suffix = secrets.token_hex(2)
    accounts = Accounts(
        suffix=suffix,
        hub=f"t{suffix}hub",
        admin=f"t{suffix}adm",
        sftp_group=f"t{suffix}sftp",
        region_prefix=f"t{suffix}r",
    )
    # Under /run: sshd wants every component of a chroot root-owned and not world-writable.
    base = Path(tempfile.mkdtemp(prefix="hub-deploy-", dir="/run"))
    base.chmod(0o755)
    started: list[Service] = []
    nginx: subprocess.Popen[bytes] | None = None
    sshd: subprocess.Popen[bytes] | None = None
    clusters: list[Cluster] = []
    stack_obj: Stack | None = None
    try:
        _useradd(accounts.hub)
        _useradd(accounts.admin, accounts.hub)
        venv = _service_venv(base, accounts.hub)
        accounts.as_hub_user = venv is not None
        if venv is None:
            # A checkout under a private folder: the processes run as root, the rest holds.
            print(f"note: {REPO} is not usable by {accounts.hub}; services run as root")
            venv = REPO / ".venv"
        run_as = accounts.hub if accounts.as_hub_user else None

        # Certificates and secrets, laid out as deploy/README.md says.
        etc = base / "etc"
        (etc / "secrets").mkdir(parents=True)
        (etc / "tls").mkdir()
        pki = make_pki(base / "pki", PLATFORM_HSA_ID)
        for name, source in {
            "server.pem": pki.server.cert,
            "server.key": pki.server.key,
            "siths-ntjp-ca.pem": pki.ca.cert_path,
            "siths-ca.pem": pki.ca.cert_path,
            "agent.pem": pki.platform.cert,
            "agent.key": pki.platform.key,
        }.items():
            shutil.copy(source, etc / "tls" / name)
            shutil.chown(etc / "tls" / name, "root", accounts.hub)
            (etc / "tls" / name).chmod(0o640)
        for folder in (etc, etc / "secrets", etc / "tls"):
            shutil.chown(folder, "root", accounts.hub)
            folder.chmod(0o750)

        # PostgreSQL: a primary and its synchronous standby.
        pg_root = base / "pg"
        pg_root.mkdir()
        shutil.chown(pg_root, "postgres", "postgres")
        primary, standby = Cluster(pg_root, "primary"), Cluster(pg_root, "standby")
        clusters += [primary, standby]
        primary.initdb()
        primary.start()
        standby.basebackup_from(primary)
        standby.start()
        _wait(
            "the standby to stream synchronously",
            lambda: (
                primary.query(
                    "SELECT application_name, sync_state FROM pg_stat_replication",
                    dbname="postgres",
                )
                == [("standby1", "sync")]
            ),
            60,
        )
        owner_password, app_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        _run(
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                f"owner_password={owner_password}",
                "-v",
                f"app_password={app_password}",
                "-f",
                str(DEPLOY / "postgres" / "roles.sql"),
            ]
        )

        def url(role: str, password: str) -> str:
            hosts = "&".join(f"host=127.0.0.1:{c.port}" for c in (primary, standby))
            return (
                f"postgresql+psycopg2://{role}:{password}@/agenthub?{hosts}"
                "&target_session_attrs=read-write"
            )

        master_key = base64.b64encode(secrets.token_bytes(32)).decode()
        _write_secret(
            etc / "secrets" / "database-url", url("agenthub_app", app_password), "root",
            accounts.hub, 0o640,
        )  # fmt: skip
        _write_secret(etc / "secrets" / "master.key", master_key, "root", accounts.hub, 0o640)
        _write_secret(
            etc / "secrets" / "owner-database-url", url("agenthub_owner", owner_password),
            accounts.admin, "root", 0o400,
        )  # fmt: skip

        state = base / "state"
        state.mkdir(mode=0o750)
        shutil.chown(state, accounts.hub, accounts.hub)
        sftp_root = base / "sftp"
        keys_dir = base / "sftp-keys"
        paths = {
            "/opt/agenthub/.venv": str(venv),
            "/etc/agenthub": str(etc),
            "/opt/agenthub": str(REPO),
        }
        template = (DEPLOY / "agenthub.env.example").read_text()
        overrides = {
            "AGENTHUB_DATA_DIR": str(state),
            "AGENTHUB_TRUSTED_PROXIES": "127.0.0.1",
            "AGENTHUB_ALLOWED_CONSUMERS": PLATFORM_HSA_ID,
            "AGENTHUB_LOG_FORMAT": "json",
        }
        env_lines = []
        for line in template.splitlines():
            key = line.partition("=")[0]
            if not line.startswith("#") and key in overrides:
                line = f"{key}={overrides.pop(key)}"
            env_lines.append(line.replace("/etc/agenthub", str(etc)))
        assert not overrides, f"agenthub.env.example lost {sorted(overrides)}"
        # Test pace (all documented settings): faster runs, short leases after a SIGKILL.
        env_lines += [
            "AGENTHUB_WORKER_DELIVER_MS=500",
            "AGENTHUB_WORKER_PICKUP_SECONDS=2",
            "AGENTHUB_WORKER_LEASE_SECONDS=15",
        ]
        (etc / "agenthub.env").write_text("\n".join(env_lines) + "\n")
        owner_env = (DEPLOY / "owner.env.example").read_text().replace("/etc/agenthub", str(etc))
        (etc / "owner.env").write_text(owner_env)
        for env_file in ("agenthub.env", "owner.env"):
            shutil.chown(etc / env_file, "root", accounts.hub)
            (etc / env_file).chmod(0o640)

        # SFTP accounts for both regions, with the hub user owning the drops.
        sftp_env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "AGENTHUB_SFTP_ROOT": str(sftp_root),
            "AGENTHUB_SFTP_KEYS": str(keys_dir),
            "AGENTHUB_SFTP_GROUP": accounts.sftp_group,
            "AGENTHUB_SFTP_USER_PREFIX": accounts.region_prefix,
            "AGENTHUB_USER": accounts.hub,
        }
        key_dir = base / "region-keys"
        key_dir.mkdir(mode=0o700)
        region_keys = {}
        uid_base = _free_id_base()
        for lan in (LAN_A, LAN_B):
            private, _public = generate_key(key_dir, f"region{lan}")
            region_keys[lan] = private
            # Region B with ids of its own choosing, as hosts sharing the drops need.
            env = (
                {**sftp_env, "AGENTHUB_SFTP_UID_BASE": str(uid_base)} if lan == LAN_B else sftp_env
            )
            _run([str(DEPLOY / "sftp-account"), "add", lan, f"{private}.pub"], env=env)
        entry = pwd.getpwnam(accounts.region_user(LAN_B))
        assert (entry.pw_uid, entry.pw_gid) == (uid_base + int(LAN_B),) * 2

        # sshd with the fragment, on a free port.
        ssh_dir = base / "sshd"
        ssh_dir.mkdir(mode=0o755)
        _, host_key_line = generate_key(ssh_dir, "ssh_host_ed25519_key")
        fragment = rewrite(
            (DEPLOY / "sftp" / "agenthub-sftp.conf").read_text(),
            {
                "Group agenthub-sftp": f"Group {accounts.sftp_group}",
                "/srv/agenthub/sftp": str(sftp_root),
                "/etc/agenthub/sftp-keys": str(keys_dir),
            },
            "sftp/agenthub-sftp.conf",
        )
        (ssh_dir / "agenthub-sftp.conf").write_text(fragment)
        sshd_port = free_port()
        main = (
            f"ListenAddress 127.0.0.1\nPort {sshd_port}\n"
            f"HostKey {ssh_dir / 'ssh_host_ed25519_key'}\nPidFile {ssh_dir / 'sshd.pid'}\n"
            "UsePAM no\nPermitRootLogin no\n"
            # On for everyone else, so that "no password" for the regions is the fragment's.
            "PasswordAuthentication yes\nPubkeyAuthentication yes\n"
            f"AllowGroups {accounts.sftp_group}\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = ssh_dir / "sshd_config"
        for extra in ("PerSourcePenalties no\n", ""):  # OpenSSH < 9.8 does not know it
            # At the top, where Debian's sshd_config includes sshd_config.d/*.conf: the
            # fragment's Match block ends with its file and leaves the lines after it global.
            config.write_text(f"Include {ssh_dir / 'agenthub-sftp.conf'}\n" + main + extra)
            probe = subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(config)], capture_output=True)
            if probe.returncode == 0:
                break
        with (ssh_dir / "sshd.log").open("ab") as sshd_log:
            sshd = subprocess.Popen(
                ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=sshd_log, stderr=sshd_log
            )

        # The hub: migrate as the owner, onboard the two regions, start two workers and nodes.
        logs = base / "logs"
        logs.mkdir()
        users = {"agenthub": run_as, "agenthub-admin": accounts.admin if run_as else None}
        web_ports = [free_port(), free_port()]

        def make_web(port: int) -> Service:
            return service_from_unit(
                DEPLOY / "systemd" / "agenthub-web@.service",
                instance=str(port),
                paths=paths,
                users=users,
                # Two gunicorn workers per node on this 2-CPU machine; how a node is sized.
                extra_env={"GUNICORN_CMD_ARGS": "--workers=2"},
                log_path=logs / f"web-{port}.log",
            )

        worker_count = iter(range(100))

        def make_worker(_: int = 0) -> Service:
            return service_from_unit(
                DEPLOY / "systemd" / "agenthub-worker.service",
                paths=paths,
                users=users,
                extra_env={},
                log_path=logs / f"worker-{next(worker_count)}.log",
            )

        soap_port, workspace_port = free_port(), free_port()
        stack_obj = Stack(
            base=base,
            accounts=accounts,
            pki=pki,
            primary=primary,
            standby=standby,
            owner_password=owner_password,
            app_password=app_password,
            etc=etc,
            soap_port=soap_port,
            workspace_port=workspace_port,
            web_ports=web_ports,
            webs={},
            workers=[],
            nginx=None,
            nginx_dir=base / "nginx",
            sshd=sshd,
            sshd_port=sshd_port,
            sshd_host_key=host_key_line,
            region_keys=region_keys,
            sftp_root=sftp_root,
            keys_dir=keys_dir,
            sftp_env=sftp_env,
            make_web=make_web,
            make_worker=make_worker,
            venv=venv,
        )
        migrate = service_from_unit(
            DEPLOY / "systemd" / "agenthub-migrate.service",
            paths=paths,
            users=users,
            extra_env={},
            log_path=logs / "migrate.log",
        )
        assert migrate.env["AGENTHUB_DATABASE_URL_FILE"].endswith("owner-database-url")
        migrate.start()
        assert migrate.proc is not None and migrate.proc.wait(120) == 0, migrate.log_text()
        start = (date.today() - timedelta(days=30)).isoformat()
        for lan, hsa_id, name in REGIONS:
            stack_obj.admin(
                "region", "add", "--lan", lan, "--hsa-id", hsa_id, "--name", name,
                "--drop", str(stack_obj.drop(lan)), "--environment", "PROD",
                "--agreement-signed", start, "--platform-confirmed", start, "--active-from", start,
            )  # fmt: skip
        for port in web_ports:
            stack_obj.webs[port] = make_web(port)
            started.append(stack_obj.webs[port])
            stack_obj.webs[port].start()
        for _ in range(2):
            worker = make_worker()
            stack_obj.workers.append(worker)
            started.append(worker)
            worker.start()
        for port in web_ports:
            _wait(
                f"web node {port}",
                lambda port=port: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok,
                90,
            )

        # nginx from the site file, in a main configuration of the test's own.
        nginx_dir = stack_obj.nginx_dir
        nginx_dir.mkdir()
        site = rewrite(
            (DEPLOY / "nginx" / "agenthub.conf").read_text(),
            {
                "server 127.0.0.1:8080 ": f"server 127.0.0.1:{web_ports[0]} ",
                "server 127.0.0.1:8081 ": f"server 127.0.0.1:{web_ports[1]} ",
                "listen 443 ssl;": f"listen 127.0.0.1:{soap_port} ssl;",
                "listen 8443 ssl;": f"listen 127.0.0.1:{workspace_port} ssl;",
                "/etc/agenthub/tls/": f"{etc}/tls/",
            },
            "nginx/agenthub.conf",
        )
        (nginx_dir / "agenthub.conf").write_text(site)
        temp = nginx_dir / "temp"
        temp.mkdir()
        (nginx_dir / "nginx.conf").write_text(
            "worker_processes 1;\ndaemon off;\n"
            f"pid {nginx_dir / 'nginx.pid'};\nerror_log {nginx_dir / 'error.log'} info;\n"
            "events { worker_connections 1024; }\nhttp {\n"
            f"  access_log {nginx_dir / 'access.log'};\n"
            f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
            f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
            f"  scgi_temp_path {temp}/scgi;\n"
            f"  include {nginx_dir / 'agenthub.conf'};\n}}\n"
        )
        nginx_cmd = ["/usr/sbin/nginx", "-e", str(nginx_dir / "error.log")]
        nginx_cmd += ["-c", str(nginx_dir / "nginx.conf")]
        _run([*nginx_cmd, "-t"])
        nginx = subprocess.Popen(nginx_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack_obj.nginx = nginx
        _wait(
            "nginx",
            lambda: socket.create_connection(("127.0.0.1", soap_port), timeout=1).close() is None,
            30,
        )
        _wait(
            "sshd",
            lambda: socket.create_connection(("127.0.0.1", sshd_port), timeout=1).close() is None,
            30,
        )
        yield stack_obj
    finally:
        if stack_obj is not None:
            started = [*stack_obj.webs.values(), *stack_obj.workers]
        for service in started:
            service.stop()
        for proc in (nginx, sshd):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)
        for cluster in clusters:
            if cluster.running:
                cluster.stop("immediate")
        for lan in (LAN_A, LAN_B):
            user = accounts.region_user(lan)
            if subprocess.run(["id", "-u", user], capture_output=True).returncode == 0:
                subprocess.run(["userdel", user], capture_output=True)
        for name in (accounts.admin, accounts.hub):
            subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", accounts.sftp_group], capture_output=True)
        for name in (accounts.admin, accounts.hub):
            subprocess.run(["groupdel", name], capture_output=True)
        if os.environ.get("HUB_KEEP_DEPLOY_TEST") != "1":
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")


# --- Ingress: mutual TLS ----------------------------------------------------------------------


def test_the_platform_certificate_gets_ok_and_is_the_caller(stack: Stack) -> None:
    """Through nginx with NTjP's certificate: OK, stored with the HSA-id from that certificate."""
    outcome = stack.call(stack.platform_session(), LAN_A, random.Random(1))
    assert outcome.acknowledged, outcome
    assert stack.stored()[outcome.correlation_id] == PLATFORM_HSA_ID
    wsdl = stack.platform_session().get(stack.soap_url + "?wsdl", timeout=10)
    assert wsdl.status_code == 200 and b"definitions" in wsdl.content
    # The address written into the WSDL is the public one from the environment file.
    assert b"https://agenthub.example.se" + ENDPOINT_PATH.encode() in wsdl.content


def test_no_certificate_another_ca_and_an_expired_one_are_refused(stack: Stack) -> None:
    """No certificate fails the TLS handshake; a certificate that does not verify (another CA,
    expired) gets the connection closed without any answer; none of them reaches the app."""
    before = len(stack.stored())
    plain = requests.Session()
    plain.trust_env = False
    plain.verify = str(stack.pki.ca.cert_path)
    with pytest.raises(requests.exceptions.SSLError):
        plain.post(stack.soap_url, data=b"<x/>", timeout=10)
    # The same with the standard library, to see it is the handshake itself that fails.
    context = ssl.create_default_context(cafile=str(stack.pki.ca.cert_path))
    with (
        pytest.raises(ssl.SSLError),
        socket.create_connection(("127.0.0.1", stack.soap_port)) as raw,
    ):
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            tls.recv(1)
    for issued, reason in (
        (stack.pki.other_ca, "unable to verify the first certificate"),
        (stack.pki.expired, "certificate has expired"),
    ):
        session = requests.Session()
        session.trust_env = False
        session.verify = str(stack.pki.ca.cert_path)
        session.cert = issued.pair
        outcome = stack.call(session, LAN_A, random.Random(2))
        assert not outcome.acknowledged
        assert outcome.detail.startswith("ConnectionError: "), outcome  # no HTTP answer at all
        error_log = (stack.nginx_dir / "error.log").read_text()
        assert "client SSL certificate verify error" in error_log, error_log[-2000:]
        assert reason in error_log, error_log[-2000:]
    assert len(stack.stored()) == before


def test_a_spoofed_certificate_header_from_outside_is_ignored(stack: Stack) -> None:
    """A caller's own X-SSL-Client-Cert (any spelling) is replaced by the one nginx verified."""
    forged = stack.pki.ca.issue("forged", "intruder", serial_number="SE0000000000-EVIL")
    pem = forged.cert.read_text()
    session = stack.platform_session()
    rng = random.Random(3)
    ids = []
    for name in ("X-SSL-Client-Cert", "x-ssl-client-cert", "X_SSL_Client_Cert"):
        outcome = stack.call(session, LAN_A, rng, headers={name: pem.replace("\n", "%0A")})
        assert outcome.acknowledged, (name, outcome)
        ids.append(outcome.correlation_id)
    stored = stack.stored()
    assert [stored[i] for i in ids] == [PLATFORM_HSA_ID] * 3
    # And the certificate really would have named someone else, had it been believed.
    assert hsa_id_from_pem(pem) == "SE0000000000-EVIL"


def test_the_workspace_door_takes_optional_certificates_and_hides_the_producer(
    stack: Stack,
) -> None:
    """:8443 serves the web app without a certificate or with a valid one, refuses one that does
    not verify, and does not lead to the producer."""
    base = f"https://127.0.0.1:{stack.workspace_port}"
    ca = str(stack.pki.ca.cert_path)
    assert requests.get(f"{base}/healthz", verify=ca, timeout=10).json()["status"] == "ok"
    with_cert = requests.get(f"{base}/healthz", verify=ca, cert=stack.pki.platform.pair, timeout=10)
    assert with_cert.status_code == 200
    stranger = requests.get(f"{base}/healthz", verify=ca, cert=stack.pki.other_ca.pair, timeout=10)
    assert stranger.status_code == 403
    producer = requests.post(f"{base}{ENDPOINT_PATH}", data=b"<x/>", verify=ca, timeout=10)
    assert producer.status_code == 404


def test_a_person_signs_in_at_the_workspace_door_with_a_siths_card(stack: Stack) -> None:
    """The whole SITHS path: nginx verifies the card and forwards it, the app maps its HSA-id to
    the account and sets the production cookie; the session is seen by both web nodes; a header
    forged by a browser without a card is replaced by nginx and signs nobody in."""
    from tests.web import form_token

    hsa_id = "SE2321000131-K7"
    card = stack.pki.ca.issue("card-karin", "Karin Kortsson", serial_number=hsa_id)
    stack.admin(
        "user", "add", "--login", "karin", "--name", "Karin Kortsson", "--hsa-id", hsa_id,
        "--role", "viewer", "--lan", LAN_A, "--no-password",
    )  # fmt: skip
    base = f"https://127.0.0.1:{stack.workspace_port}"
    browser = requests.Session()
    browser.trust_env = False
    browser.verify = str(stack.pki.ca.cert_path)
    browser.cert = card.pair
    page = browser.get(f"{base}/logga-in", timeout=10)
    assert page.status_code == 200 and "Logga in med SITHS-kort" in page.text
    answer = browser.post(
        f"{base}/logga-in/siths",
        data={"csrf_token": form_token(page.text)},
        headers={"Referer": f"{base}/logga-in"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/", answer.text[:300]
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("__Host-agenthub=") and "Secure" in cookie and "HttpOnly" in cookie
    # nginx spreads requests over both nodes: each of them knows the session.
    for _ in range(6):
        home = browser.get(f"{base}/", allow_redirects=False, timeout=10)
        assert home.status_code == 200 and "Välkommen, Karin Kortsson" in home.text
        assert "SITHS-kort" in home.text
    # No card, and the certificate pasted into the header by hand: nginx replaces the header.
    forger = requests.Session()
    forger.trust_env = False
    forger.verify = str(stack.pki.ca.cert_path)
    page = forger.get(f"{base}/logga-in", timeout=10)
    forged = forger.post(
        f"{base}/logga-in/siths",
        data={"csrf_token": form_token(page.text)},
        headers={
            "Referer": f"{base}/logga-in",
            "X-SSL-Client-Cert": quote(card.cert.read_text()),
        },
        allow_redirects=False,
        timeout=10,
    )
    assert forged.status_code == 403
    assert forger.get(f"{base}/", allow_redirects=False, timeout=10).status_code == 302


def test_a_body_over_the_contract_cap_gets_a_soap_client_fault(stack: Stack) -> None:
    """More than 5 MB: nginx answers the contract's SOAP Client fault (HTTP 500) itself."""
    response = stack.platform_session().post(
        stack.soap_url,
        data=b"<" + b"x" * (5 * 1024 * 1024) + b"/>",
        headers={"Content-Type": "text/xml; charset=utf-8"},
        timeout=30,
    )
    assert response.status_code == 500
    assert b"<faultcode>soap:Client</faultcode>" in response.content


# --- Failures under load ----------------------------------------------------------------------


def test_killing_a_web_node_under_load_loses_no_acknowledged_message(stack: Stack) -> None:
    """SIGKILL one of the two gunicorn nodes mid-load: nginx sends on to the other; every call
    answered OK is stored, and calls go on being answered."""
    victim = stack.webs[stack.web_ports[0]]
    with Load(stack, threads=4) as load:
        _wait("calls through both nodes", lambda: load.acknowledged_after(0) >= 40, 60)
        victim.kill()
        killed_at = time.monotonic()
        _wait("calls after the kill", lambda: load.acknowledged_after(killed_at) >= 60, 60)
    acknowledged = {o.correlation_id for o in load.outcomes if o.acknowledged}
    stored = stack.stored()
    assert acknowledged and acknowledged <= set(stored)
    failed = [o for o in load.outcomes if not o.acknowledged]
    print(f"web node kill: {len(acknowledged)} acknowledged, {len(failed)} not: {failed[:5]}")
    # Bring the node back for the tests after this one.
    victim_port = stack.web_ports[0]
    stack.webs[victim_port] = stack.make_web(victim_port)
    stack.webs[victim_port].start()
    _wait(
        "the restarted node",
        lambda: requests.get(f"http://127.0.0.1:{victim_port}/healthz", timeout=2).ok,
        90,
    )


def _worker_ids(stack: Stack) -> dict[int, str]:
    rows = stack.db.query("SELECT pid, worker_id FROM hub.worker_heartbeats")
    return {int(pid): worker_id for pid, worker_id in rows}


def _deliveries(stack: Stack, lan: str = LAN_A) -> list[tuple[str, str, float]]:
    rows = stack.db.query(
        in_region(
            lan,
            "SELECT message_id, actor, extract(epoch FROM at) FROM {schema}.access_log "
            "WHERE action = 'message.delivered'",
        )
    )
    return [(row[0], row[1], float(row[2])) for row in rows]


def _received_ids(stack: Stack, lan: str = LAN_A) -> list[str]:
    """Message ids of the XML files in a region's received/ (one per delivered message)."""
    names = [p.name for p in (stack.drop(lan) / "received").iterdir() if p.suffix == ".xml"]
    return [name.split("_", 1)[1].rsplit(".", 1)[0] for name in names]


def test_sigkill_of_the_leading_worker_hands_the_scheduler_over_within_30_s(stack: Stack) -> None:
    """Exactly one of two workers leads; SIGKILL it under load and the other leads within 30 s;
    every message is delivered exactly once, by one worker, and the spare did nothing before."""
    pids = {worker.pid: worker for worker in stack.workers}
    holders = _wait_for_holders(stack, set(pids))
    leader, spare = pids[holders[0]], next(w for p, w in pids.items() if p != holders[0])
    _wait("both heartbeats", lambda: set(_worker_ids(stack)) >= set(pids), 30)
    ids = _worker_ids(stack)
    with Load(stack, threads=2) as load:
        _wait("calls before the kill", lambda: load.acknowledged_after(0) >= 20, 60)
        _wait("deliveries by the leader", lambda: len(_deliveries(stack)) > 0, 30)
        leader.kill()
        killed = time.monotonic()
        killed_at = time.time()
        took = _wait(
            "the spare to take the lead",
            lambda: stack.lock_holders() == [spare.pid],
            TAKEOVER_LIMIT_S + 5,
        )
        _wait("calls after the kill", lambda: load.acknowledged_after(killed) >= 20, 60)
    print(f"scheduler takeover after SIGKILL: {took:.1f} s")
    assert took <= TAKEOVER_LIMIT_S
    _wait("every message delivered", lambda: stack.pending() == 0, 60)
    deliveries = _deliveries(stack)
    by_message: dict[str, list[str]] = {}
    for message_id, actor, _at in deliveries:
        by_message.setdefault(message_id, []).append(actor)
    assert all(len(actors) == 1 for actors in by_message.values()), by_message
    received = _received_ids(stack)
    assert sorted(received) == sorted(set(received)), "a message was written twice"
    assert set(received) == set(by_message)
    actors = {actor for _m, actor, _at in deliveries}
    assert actors <= {f"worker:{ids[leader.pid]}", f"worker:{ids[spare.pid]}"}
    early = [a for _m, a, at in deliveries if at < killed_at]
    assert early and set(early) == {f"worker:{ids[leader.pid]}"}, "the spare ran a job"
    assert any(a == f"worker:{ids[spare.pid]}" for _m, a, at in deliveries if at > killed_at)
    # A new spare for what follows.
    stack.workers.remove(leader)
    replacement = stack.make_worker(0)
    replacement.start()
    stack.workers.append(replacement)


def _wait_for_holders(stack: Stack, pids: set[int], cluster: Cluster | None = None) -> list[int]:
    """Wait until exactly one of ``pids`` holds the scheduler lock; return the holders."""
    found: list[int] = []

    def one() -> bool:
        found[:] = stack.lock_holders(cluster)
        return len(found) == 1 and found[0] in pids

    _wait(f"one lock holder among {sorted(pids)}", one, TAKEOVER_LIMIT_S)
    return found


def test_promoting_the_standby_under_load_loses_no_acknowledged_message(stack: Stack) -> None:
    """Stop the primary as if it died, promote the synchronous standby: every call answered OK
    is on the new primary, the hub answers again on it, exactly one worker leads there and the
    messages that arrived meanwhile are delivered."""
    old, new = stack.primary, stack.standby
    assert stack.db is old
    with Load(stack, threads=3) as load:
        _wait("calls before the failover", lambda: load.acknowledged_after(0) >= 20, 60)
        old.stop("immediate")
        time.sleep(1)
        new.promote()
        promoted = time.monotonic()
        _wait("calls on the new primary", lambda: load.acknowledged_after(promoted) >= 20, 90)
    assert stack.db is new
    acknowledged = {o.correlation_id for o in load.outcomes if o.acknowledged}
    stored = stack.stored()
    missing = acknowledged - set(stored)
    assert not missing, f"{len(missing)} acknowledged messages lost in the failover"
    failed = [o for o in load.outcomes if not o.acknowledged]
    print(f"failover: {len(acknowledged)} acknowledged, {len(failed)} not (Server faults)")
    _wait_for_holders(stack, {w.pid for w in stack.workers}, new)
    _wait("deliveries on the new primary", lambda: stack.pending() == 0, 90)


# --- Regions' SFTP accounts -------------------------------------------------------------------


def test_region_a_cannot_read_or_list_region_b_drop(stack: Stack) -> None:
    """Region A's account sees its own drop only (chroot): B's folder cannot be listed or read
    by path, not even outside the chroot; a login as B with A's key, a password or a shell
    command get nothing. What the hub delivered A can read, and what A uploads the hub picks up."""
    b_drop = stack.drop(LAN_B)
    assert stack.call(stack.platform_session(), LAN_A, random.Random(5)).acknowledged
    _wait("the hub to deliver to region A", lambda: stack.pending(LAN_A) == 0, 30)
    with stack.sftp(LAN_A) as sftp:
        assert sorted(sftp.listdir("/")) == ["drop"]
        assert sorted(sftp.listdir("/drop")) == ["extracts", "receipts", "received", "rejected"]
        assert sftp.listdir("/..") == ["drop"]
        for path in (str(b_drop), f"/../{stack.accounts.region_user(LAN_B)}", "/etc"):
            with pytest.raises(OSError):
                sftp.listdir(path)
        with pytest.raises(OSError):
            sftp.open("/etc/passwd").read()
        received = [n for n in sftp.listdir("/drop/received") if n.endswith(".xml")]
        assert received, "the hub delivered nothing to region A"
        with sftp.open(f"/drop/received/{received[0]}") as handle:
            assert handle.read(5) == b"<?xml"
        with sftp.open("/drop/extracts/extract-1.csv", "w") as handle:
            handle.write(b"personnummer\n")
        _wait(
            "the hub to pick the extract up",
            lambda: "extract-1.csv" not in sftp.listdir("/drop/extracts"),
            30,
        )
    # Not even B's name with A's key, nor a password, nor a command.
    with pytest.raises(paramiko.AuthenticationException):
        stack.sftp(LAN_A, user=stack.accounts.region_user(LAN_B))
    transport = paramiko.Transport(("127.0.0.1", stack.sshd_port))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password(stack.accounts.region_user(LAN_A), "secret")
        assert refused.value.allowed_types == ["publickey"]
    finally:
        transport.close()
    with stack.sftp(LAN_A) as sftp:
        channel = sftp.get_channel()
        assert channel is not None
        session = channel.get_transport().open_session()  # type: ignore[union-attr]
        session.exec_command("id; cat /etc/passwd")
        session.settimeout(2)
        try:
            output = session.recv(4096)
        except TimeoutError:
            output = b""
        assert b"uid=" not in output and b"root:" not in output
    # Outside SFTP too: A's user cannot enter B's folders on the host.
    peek = subprocess.run(
        ["setpriv", f"--reuid={stack.accounts.region_user(LAN_A)}", "--init-groups",
         f"--regid={stack.accounts.region_user(LAN_A)}", "ls", str(b_drop / "received")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert peek.returncode != 0 and "Permission denied" in peek.stderr


def test_sftp_accounts_are_idempotent_and_offboarding_removes_them(stack: Stack) -> None:
    """``sftp-account add`` twice changes nothing; ``remove`` ends the account (no login) and
    keeps or, with --purge, deletes its files; removing twice is fine."""
    user = stack.accounts.region_user(LAN_B)
    drop = stack.drop(LAN_B)

    def state() -> list[tuple[str, int, int, int]]:
        paths = [drop.parent, drop, *sorted(drop.iterdir()), stack.keys_dir / user]
        return [(p.name, p.stat().st_uid, p.stat().st_gid, p.stat().st_mode) for p in paths]

    before = state()
    keys_before = (stack.keys_dir / user).read_text()
    stack.sftp_account("add", LAN_B, f"{stack.region_keys[LAN_B]}.pub")
    assert state() == before and (stack.keys_dir / user).read_text() == keys_before
    assert drop.stat().st_mode & 0o7777 == 0o2770
    assert drop.stat().st_uid == stack.accounts.hub_ids[0]
    listing = stack.sftp_account("list")
    assert f"{user} key(s)=1" in listing
    with stack.sftp(LAN_B) as sftp:
        assert "received" in sftp.listdir("/drop")

    stack.sftp_account("remove", LAN_B)
    assert subprocess.run(["id", "-u", user], capture_output=True).returncode != 0
    assert not (stack.keys_dir / user).exists()
    assert (drop / "received").is_dir()  # the region's files stay until --purge
    with pytest.raises((paramiko.AuthenticationException, paramiko.SSHException)):
        stack.sftp(LAN_B)
    stack.sftp_account("remove", LAN_B, "--purge")
    assert not drop.parent.exists()
    stack.sftp_account("remove", LAN_B)
    bad = subprocess.run(
        [str(DEPLOY / "sftp-account"), "add", "1x", "/dev/null"],
        env=stack.sftp_env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "two digits" in bad.stderr


# --- PostgreSQL: roles, backups ---------------------------------------------------------------


def test_the_app_role_can_use_rows_but_not_change_schemas(stack: Stack) -> None:
    """The web and worker log in as agenthub_app only, a role that is no superuser, reads and
    writes every region's rows (granted by default privileges when the owner made them), and
    can create nothing; the owner's secret is not readable by the hub's user."""
    sessions = stack.db.query(
        "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = 'agenthub' "
        "AND pid <> pg_backend_pid()"
    )
    assert {row[0] for row in sessions} == {"agenthub_app"}
    assert stack.db.query("SELECT rolsuper FROM pg_roles WHERE rolname = 'agenthub_app'") == [
        (False,)
    ]
    conn = stack.db.connect("agenthub", "agenthub_app", password=stack.app_password)
    try:
        with conn.cursor() as cursor:
            for lan in (LAN_A, LAN_B):
                cursor.execute(in_region(lan, "SELECT count(*) FROM {schema}.messages"))
            for statement in (
                "CREATE TABLE hub.intruder (id int)",
                "CREATE SCHEMA intruder",
                f"DROP TABLE region_{LAN_A}.messages",
                f"TRUNCATE region_{LAN_A}.messages",
            ):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cursor.execute(statement)
    finally:
        conn.close()
    if stack.accounts.as_hub_user:
        peek = subprocess.run(
            ["setpriv", f"--reuid={stack.accounts.hub}", f"--regid={stack.accounts.hub}",
             "--init-groups", "cat", str(stack.etc / "secrets" / "owner-database-url")],
            capture_output=True,
        )  # fmt: skip
        assert peek.returncode != 0


def test_backup_and_restore_of_one_region_and_of_all(stack: Stack) -> None:
    """``backup region 14`` and ``backup all``; region 14's schema lost and restored from either
    dump (region 01 keeps what it got since); the full dump restored into a new database."""
    db = stack.db
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(db.port),
        "PGUSER": "agenthub_owner",
        "PGPASSWORD": stack.owner_password,
        "PGDATABASE": "agenthub",
        "PG_BIN": str(PG_BIN),
    }
    session, rng = stack.platform_session(), random.Random(11)
    for lan in (LAN_A, LAN_B):
        assert stack.call(session, lan, rng).acknowledged
    dumps = stack.base / "backups"
    dumps.mkdir()
    backup, restore = str(DEPLOY / "postgres" / "backup"), str(DEPLOY / "postgres" / "restore")
    region_dump = Path(_run([backup, "region", LAN_A, str(dumps)], env=env).stdout.strip())
    full_dump = Path(_run([backup, "all", str(dumps)], env=env).stdout.strip())
    assert region_dump.name.startswith(f"agenthub-region_{LAN_A}-") and region_dump.stat().st_size
    assert full_dump.name.startswith("agenthub-all-") and full_dump.stat().st_size
    at_backup = {lan: set(stack.stored(lan)) for lan in (LAN_A, LAN_B)}
    assert at_backup[LAN_A] and at_backup[LAN_B]

    later_b = stack.call(session, LAN_B, rng)
    assert later_b.acknowledged
    # Region 14's store is lost (as the owner: dropped with everything in it) ...
    owner = db.connect("agenthub", "agenthub_owner", password=stack.owner_password)
    for source in (region_dump, full_dump):
        with owner.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA region_{LAN_A} CASCADE")
        # ... and back from the dump, with its grants: the app answers for it again.
        _run([restore, "region", LAN_A, str(source)], env=env)
        assert set(stack.stored(LAN_A)) == at_backup[LAN_A], source.name
        assert set(stack.stored(LAN_B)) == at_backup[LAN_B] | {later_b.correlation_id}
        assert stack.call(session, LAN_A, rng).acknowledged
    owner.close()

    # Everything, into a new database made like the first.
    db.query("CREATE DATABASE agenthub_copy OWNER agenthub_owner", dbname="postgres")
    _run([restore, "all", str(full_dump)], env={**env, "PGDATABASE": "agenthub_copy"})
    copy = db.connect("agenthub_copy", "agenthub_app", password=stack.app_password)
    try:
        with copy.cursor() as cursor:
            for lan in (LAN_A, LAN_B):
                cursor.execute(in_region(lan, "SELECT correlation_id FROM {schema}.messages"))
                assert {row[0] for row in cursor.fetchall()} == at_backup[lan]
    finally:
        copy.close()


def test_service_logs_are_json_lines_without_personal_data(stack: Stack) -> None:
    """What the web nodes and workers wrote (the journal, under systemd): every line one JSON
    object, and none of the personnummer sent in this module."""
    services = [*stack.webs.values(), *stack.workers]
    texts = {service.name: service.log_text() for service in services}
    assert all(texts.values())
    for name, text in texts.items():
        for line in text.splitlines():
            if line.strip():
                record = json.loads(line)
                assert {"time", "level", "logger", "message"} <= set(record), (name, line)
    everything = "\n".join(texts.values())
    assert stack.sent_pnrs
    leaked = [pnr for pnr in stack.sent_pnrs if pnr in everything or pnr[2:] in everything]
    assert not leaked
