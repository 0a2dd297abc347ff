"""Shared fixtures: every test that touches a database runs on SQLite and on PostgreSQL.

PostgreSQL: a fresh database per test on 127.0.0.1:5432 (user postgres, trust auth), dropped
after. Without a server the PostgreSQL half is skipped on a laptop and fails under ``CI=true``.
Regions: A (14) and B (01); B must never see what A holds. Personas (:data:`ALICE`, :data:`BOB`,
:data:`CHARLIE`, :data:`OLOF`): Alice reviews for 14, Bob views 14, Charlie reviews for 01 and
must see nothing of 14, Olof is the agent's operator and sees no woman's content.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from sqlalchemy import Engine, event, select
from werkzeug.serving import BaseWSGIServer, make_server

from hub.config import Settings, load_settings
from hub.context import Hub, build_hub
from hub.contract.personnummer import generate
from hub.contract.regions import REGIONS
from hub.db.migrate import upgrade_hub
from hub.db.region_tables import outbox, review_records
from hub.intake.service import take_in
from hub.review.decide import decide
from hub.review.records import NO_FLAGS, Flags, RecordRefused, Stored, Submission
from hub.tenancy.access import Actor, Permission, RegionScope, Role, region_scope, system_actor
from hub.tenancy.registry import MemberRegion, save_region
from hub.web.app import create_app

# The real OpenSSH server fixture (tests/sshd.py) is shared by drop and job tests.
# The web fixtures (tests/web.py: personas' accounts, sign-in helpers, the browser, axe).
pytest_plugins = [
    *(["tests.sshd"] if (Path(__file__).parent / "sshd.py").exists() else []),
    "tests.web",
]

PG_DSN = os.environ.get("AGENTHUB_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
_counter = itertools.count()

REGION_A = ("14", "SE2321000131", "Västra Götalandsregionen")
REGION_B = ("01", "SE2321000016", "Region Stockholm")

ALICE = Actor(
    kind="user",
    label="user:alice",
    name="Alice Andersson",
    hsa_id="SE2321000131-A1",
    roles={"14": frozenset({Role.REVIEWER})},
    auth_method="password+totp",
)
BOB = Actor(
    kind="user",
    label="user:bob",
    name="Bob Berg",
    hsa_id="SE2321000131-B2",
    roles={"14": frozenset({Role.VIEWER})},
    auth_method="password+totp",
)
CHARLIE = Actor(
    kind="user",
    label="user:charlie",
    name="Charlie Carlsson",
    hsa_id="SE2321000016-C3",
    roles={"01": frozenset({Role.REVIEWER})},
    auth_method="password+totp",
)
OLOF = Actor(
    kind="user",
    label="user:olof",
    name="Olof Olsson",
    hsa_id="SE0000000000-O4",
    operator=True,
    auth_method="password+totp",
)


def _pg_connect(dbname: str = "postgres") -> Any:
    base = PG_DSN.replace("postgresql+psycopg2://", "postgresql://")
    conn = psycopg2.connect(f"{base}/{dbname}", connect_timeout=3)
    conn.autocommit = True
    return conn


def _pg_available() -> str | None:
    try:
        _pg_connect().close()
    except psycopg2.OperationalError as exc:
        return str(exc).strip()
    return None


def end_database_sessions(database_url: str, only: int | None = None) -> None:
    """End every session of a PostgreSQL test database (a restart or failover, as clients see
    it), or ``only`` the one with that backend pid."""
    conn = _pg_connect(database_url.rsplit("/", 1)[-1])
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND (%(only)s::int IS NULL OR pid = %(only)s::int)",
            {"only": only},
        )
    conn.close()


@contextmanager
def sessions_ended_midway(
    engine: Engine, database_url: str, marker: str, times: int = 1
) -> Iterator[list[int]]:
    """End the session of each of the next ``times`` queries containing ``marker``, as the query
    goes out: a connection lost in the middle of a query. Yields the ended backend pids."""
    ended: list[int] = []

    def end(connection: Any, cursor: Any, statement: str, *_: Any) -> None:
        if marker in statement and len(ended) < times:
            ended.append(cursor.connection.get_backend_pid())
            end_database_sessions(database_url, only=ended[-1])

    event.listen(engine, "before_cursor_execute", end)
    try:
        yield ended
    finally:
        event.remove(engine, "before_cursor_execute", end)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A TCP port that accepts connections and never says anything (a hung server)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


class TricklingServer:
    """A real HTTP server on loopback that answers slowly, or breaks off, as a test asks.

    Each connection reads the request (its headers and ``Content-Length`` bytes), sends ``head``
    ``head_step`` bytes at a time and ``body`` ``step`` bytes at a time, every ``interval``
    seconds, and closes the connection after ``close_after`` seconds (or when all is sent). A
    per-read timeout never fires against it: the next bytes always come in time.
    """

    def __init__(
        self,
        head: bytes,
        body: bytes = b"",
        *,
        interval: float = 0.2,
        step: int = 1,
        head_step: int | None = None,
        close_after: float = 60.0,
    ) -> None:
        self.head, self.body, self.interval, self.step = head, body, interval, step
        self.head_step = head_step or len(head)
        self.close_after = close_after
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        started = time.monotonic()
        try:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while len(rest) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                rest += chunk
            self.requests.append(rest)
            pieces = [
                self.head[i : i + self.head_step] for i in range(0, len(self.head), self.head_step)
            ] + [self.body[i : i + self.step] for i in range(0, len(self.body), self.step)]
            for index, piece in enumerate(pieces):
                if self._stop.is_set() or time.monotonic() - started > self.close_after:
                    return
                if index:
                    time.sleep(self.interval)
                conn.sendall(piece)
        except OSError:
            return
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop accepting and end every connection's answer."""
        self._stop.set()
        self._accepting.join(5)
        self.listener.close()
        for thread in self._threads:
            thread.join(5)


def http_head(status: str = "200 OK", length: int | None = None, **headers: str) -> bytes:
    """An HTTP/1.1 response head (status line and headers, with the blank line)."""
    lines = [f"HTTP/1.1 {status}", "Content-Type: text/xml; charset=utf-8"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture(scope="session")
def pg_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None."""
    return _pg_available()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_problem: str | None
) -> Iterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'hub.db'}"
        return
    if pg_problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {pg_problem}")
        pytest.skip(f"PostgreSQL not available: {pg_problem}")
    name = f"agenthub_t{os.getpid()}_{next(_counter)}"
    conn = _pg_connect()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    yield f"{PG_DSN}/{name}"
    conn = _pg_connect()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Test settings: env=test, data under tmp_path, the parametrized database."""
    return load_settings(
        {
            "AGENTHUB_ENV": "test",
            "AGENTHUB_DATA_DIR": str(tmp_path / "data"),
            "AGENTHUB_DATABASE_URL": database_url,
        }
    )


@pytest.fixture
def postgresql_only(settings: Settings) -> None:
    """Skip the SQLite half: lost, ended or cut server connections happen to PostgreSQL only."""
    if settings.is_sqlite:
        pytest.skip("server connections are PostgreSQL's (SQLite opens a file)")


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    """The hub's services on a migrated, empty database."""
    built = build_hub(settings)
    upgrade_hub(built.db)
    yield built
    built.close()


def scope_of(
    hub: Hub, lan: str, label: str = "test", permission: Permission = Permission.READ_METADATA
) -> RegionScope:
    """Region ``lan``'s scope for the hub's own system actor named ``label`` (jobs, the CLI)."""
    return region_scope(hub, system_actor(label), lan, permission)


def active_region(lan: str, hsa_id: str, name: str, drop: str | None = None) -> MemberRegion:
    """A region with a signed, confirmed agreement active since last year."""
    start = date.today() - timedelta(days=365)
    return MemberRegion(
        lan_code=lan,
        hsa_id=hsa_id,
        name=name,
        drop_url=drop,
        agreement_signed=start,
        platform_confirmed=start,
        active_from=start,
    )


@pytest.fixture
def add_region(hub: Hub, tmp_path: Path) -> Callable[..., MemberRegion]:
    """Register an active member region (drop: a folder under tmp_path)."""

    def add(lan: str, hsa_id: str, name: str, **changes: Any) -> MemberRegion:
        region = active_region(lan, hsa_id, name, drop=str(tmp_path / "drops" / lan))
        if changes:
            region = MemberRegion(**{**region.__dict__, **changes})
        save_region(hub.db, hub.keys, region, system_actor("test"), create=False)
        hub.router.invalidate()
        return region

    return add


@pytest.fixture
def regions_ab(add_region: Callable[..., MemberRegion]) -> tuple[MemberRegion, MemberRegion]:
    """Region A (14) and region B (01), both active members."""
    return add_region(*REGION_A), add_region(*REGION_B)


@pytest.fixture
def rng() -> random.Random:
    """A seeded random source for synthetic test data."""
    return random.Random(20261122)


@pytest.fixture
def make_pnr(rng: random.Random) -> Callable[[], str]:
    """Synthetic, valid personnummer (never a real person's)."""
    return lambda: generate(rng)


@pytest.fixture
def app(hub: Hub) -> Any:
    """The Flask app on the test hub."""
    return create_app(hub, {"TESTING": True})


@pytest.fixture
def client(app: Any) -> Any:
    """Flask test client; calls come from loopback (dev/test needs no certificate)."""
    return app.test_client()


class LiveServer:
    """A real HTTP server on loopback serving a WSGI app in a thread."""

    def __init__(self, wsgi_app: Any) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def live_server(app: Any) -> Iterator[LiveServer]:
    """The hub served over real HTTP on 127.0.0.1."""
    server = LiveServer(app)
    yield server
    server.stop()


def reviewer_of(lan: str) -> Actor:
    """A signed-in reviewer of region ``lan`` (a person: the review is never the system's)."""
    return Actor(
        kind="user",
        label=f"user:reviewer-{lan}",
        name=f"Granskare {lan}",
        hsa_id=f"{REGIONS[lan].hsa_root}-G1",
        roles={lan: frozenset({Role.REVIEWER})},
        auth_method="password+totp",
    )


@dataclass(frozen=True)
class Queued:
    """A record taken in and approved: its outbox record (``record_id``) and review record."""

    record_id: str
    review_record_id: str
    duplicate: bool
    correlation_id: str
    check_text: str | None


def submit(
    hub: Hub,
    lan: str,
    to_lan: str,
    record: Any,
    *,
    reference: str | None = None,
    flags: Flags = NO_FLAGS,
) -> Stored:
    """Take one record into region ``lan``'s review queue; raise RecordRefused if refused."""
    report = take_in(
        scope_of(hub, lan, "test", Permission.SUBMIT),
        [Submission(to_lan, record, flags, reference)],
        source="cli",
        name="test",
    )
    [result] = report.results
    if isinstance(result, RecordRefused):
        raise result
    return result


def approve(
    hub: Hub, lan: str, to_lan: str, record: Any, *, reference: str | None = None
) -> Queued:
    """Take a record in and have region ``lan``'s reviewer approve it: it is in the outbox."""
    stored = submit(hub, lan, to_lan, record, reference=reference)
    assert stored.record_id is not None, stored
    with hub.db.region(lan).connect() as connection:
        row = connection.execute(
            select(review_records).where(review_records.c.id == stored.record_id)
        ).one()
    if stored.outcome == "duplicate":
        outbox_id = row.outbox_id
    else:
        scope = region_scope(hub, reviewer_of(lan), lan, Permission.DECIDE)
        outbox_id = decide(scope, row.id, "approve", content_sha256=row.content_sha256).outbox_id
    assert outbox_id is not None
    with hub.db.region(lan).connect() as connection:
        correlation = connection.execute(
            select(outbox.c.correlation_id).where(outbox.c.id == outbox_id)
        ).scalar_one()
    return Queued(outbox_id, row.id, stored.outcome == "duplicate", correlation, stored.check_text)
