"""Scheduler leadership: of all ``agenthub worker`` processes, exactly one runs the jobs.

Every worker builds and starts the same scheduler, but each job except ``heartbeat`` is
*fenced*: it does its work only while this worker leads, and returns at once otherwise. A worker
that does not lead keeps trying to, every ``AGENTHUB_WORKER_LEADER_POLL_SECONDS`` (5 s), so a
second worker on another node is a hot spare.

Who leads:

* **PostgreSQL** — the worker that holds the session advisory lock :data:`LOCK_KEY` on a
  connection of its own (outside the pool, autocommit, ``application_name`` = ``agenthub worker
  <pid> <worker id>`` so that ``pg_stat_activity`` names the leader). The lock lives exactly as
  long as that session: when the leader dies (SIGKILL included) its socket closes, PostgreSQL
  ends the session and the lock is free for the next poll of another worker. Advisory locks are
  not replicated: after a failover nobody holds the lock on the new primary, the leader's ping
  fails on the lost connection so it stops leading, and every worker reconnects (the database
  URL lists both hosts, ``target_session_attrs=read-write``) and tries again; the lock lets
  exactly one of them win. The lock session asks the server for TCP keepalives and a user
  timeout, so a leader cut off by a partition also loses its session on the server side (about
  30 s), after it stopped leading on its own side (its ping fails within the 10 s
  ``tcp_user_timeout`` plus one poll).
* **SQLite** (the embedded default, one machine by definition) — an exclusive ``flock`` on
  ``<data dir>/scheduler.lock``, which the kernel releases when the process dies.

Why no job runs twice: before each run a fenced job checks leadership *on the lock's own
connection* (a round trip on PostgreSQL that fails if the session was lost), so a worker that lost
the lock stops starting jobs at once; APScheduler's ``max_instances=1`` keeps one run of a job per
process; and a run already under way when leadership moves is finished under its row claims
(:mod:`hub.db.claims`), which keep two workers off the same rows in any case.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

import psycopg2
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import Engine

from hub.config import env_int
from hub.context import Hub
from hub.db.engines import CONNECT_TIMEOUT_SECONDS, TCP_USER_TIMEOUT_MS

log = logging.getLogger(__name__)

# int.from_bytes(b"agenthub"): one lock per database, so two installations on one server that
# use different databases never contend.
LOCK_KEY = 0x6167656E74687562
# Jobs every worker runs, leader or not: a spare worker is alive too, and ``drops status`` says so.
UNFENCED_JOBS = frozenset({"heartbeat"})
DEFAULT_POLL_SECONDS = 5
# Sent as server settings on the lock's session: the server drops the session of a leader it no
# longer hears from (a partition, a host gone) after about 20 + 2 x 5 s idle, or when data it
# sent stays unacknowledged for 20 s, which frees the lock for another worker.
_SERVER_OPTIONS = (
    "-c tcp_keepalives_idle=20 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=2 "
    "-c tcp_user_timeout=20000 -c statement_timeout=10000"
)


class Leadership(Protocol):
    """One way of holding the scheduler's lead."""

    def try_acquire(self) -> bool:
        """Take the lead if nobody holds it; True if this process holds it now."""
        ...

    def still_held(self) -> bool:
        """Check (on PostgreSQL: ask the server) that the lead is still this process's."""
        ...

    def release(self) -> None:
        """Give the lead up (also when it is already lost)."""
        ...


class PostgresLeadership:
    """The session advisory lock :data:`LOCK_KEY` on a dedicated connection (see the module)."""

    def __init__(self, engine: Engine, worker_id: str, key: int = LOCK_KEY) -> None:
        self.key = key
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        # The same bounded waits as the hub's pools (hub.db); the URL's own parameters win.
        cparams.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
        cparams.setdefault("tcp_user_timeout", TCP_USER_TIMEOUT_MS)
        # Names the leader in pg_stat_activity; the pid first, since PostgreSQL keeps 63 bytes.
        cparams["application_name"] = f"agenthub worker {os.getpid()} {worker_id}"[:63]
        extra = cparams.get("options", "")
        cparams["options"] = f"{extra} {_SERVER_OPTIONS}".strip()
        self._cargs: list[Any] = list(cargs)
        self._cparams: dict[str, Any] = dict(cparams)
        self._connection: Any = None
        self._held = False
        # The elector's thread and the scheduler's job threads share the one connection.
        self._lock = threading.Lock()

    def _query(self, sql: str, params: tuple[Any, ...]) -> Any:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg2.connect(*self._cargs, **self._cparams)
            self._connection.autocommit = True
        with self._connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return None if row is None else row[0]

    def _drop_connection(self) -> None:
        connection, self._connection, self._held = self._connection, None, False
        if connection is not None:
            try:
                connection.close()
            except psycopg2.Error:
                pass

    def try_acquire(self) -> bool:
        """``pg_try_advisory_lock`` on the lock connection (reconnecting when it was lost)."""
        with self._lock:
            try:
                self._held = bool(self._query("SELECT pg_try_advisory_lock(%s)", (self.key,)))
            except psycopg2.Error as exc:
                log.info("scheduler lead: database not reachable (%s)", type(exc).__name__)
                self._drop_connection()
            return self._held

    def still_held(self) -> bool:
        """Ask the server whether this session holds the lock; a lost session means no."""
        with self._lock:
            if not self._held:
                return False
            try:
                # A bigint advisory lock shows in pg_locks as classid (high 32 bits), objid (low
                # 32 bits) and objsubid 1.
                self._held = bool(
                    self._query(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                        "AND pid = pg_backend_pid() AND granted AND classid = %s "
                        "AND objid = %s AND objsubid = 1)",
                        (self.key >> 32, self.key & 0xFFFFFFFF),
                    )
                )
            except psycopg2.Error:
                self._drop_connection()
            return self._held

    def release(self) -> None:
        """Unlock, then close the lock's session (which would free the lock by itself too, but
        only once the server noticed: unlocking first lets a spare take over at its next poll)."""
        with self._lock:
            if self._held and self._connection is not None and not self._connection.closed:
                try:
                    self._query("SELECT pg_advisory_unlock(%s)", (self.key,))
                except psycopg2.Error:
                    pass  # the session is going anyway, and the lock with it
            self._drop_connection()


class FileLeadership:
    """An exclusive ``flock`` on a file: the embedded default's lead, on one machine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        """Take the lock without waiting; True if this process holds it."""
        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def still_held(self) -> bool:
        """A flock lasts as long as its open file: held while this process keeps it."""
        return self._file is not None

    def release(self) -> None:
        """Close the file, which drops the lock."""
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()


class Elector:
    """Keeps trying to lead, knows whether this worker leads, and fences jobs on it."""

    def __init__(self, leadership: Leadership, worker_id: str, *, poll_s: float) -> None:
        self.leadership = leadership
        self.worker_id = worker_id
        self.poll_s = poll_s
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        """Whether this worker led at the last check (no round trip)."""
        return self._leading.is_set()

    def _gain(self) -> None:
        self._leading.set()
        log.info("worker %s leads the scheduler", self.worker_id)

    def _lose(self) -> None:
        if self._leading.is_set():
            self._leading.clear()
            log.warning("worker %s lost the scheduler lead; will try again", self.worker_id)

    def check(self) -> bool:
        """True if this worker leads right now, verified on the lock itself."""
        if not self._leading.is_set():
            return False
        if self.leadership.still_held():
            return True
        self._lose()
        return False

    def poll(self) -> bool:
        """One round: verify a lead held, or try to take it. Returns whether this worker leads."""
        if self._leading.is_set():
            return self.check()
        if self.leadership.try_acquire():
            self._gain()
            return True
        return False

    def _poll_safely(self) -> None:
        try:
            self.poll()
        except Exception:  # the loop must outlive any surprise, or the worker never leads again
            log.exception("scheduler lead: check failed")
            self._lose()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._poll_safely()

    def start(self) -> None:
        """Try to lead once now (so a lone worker's first jobs run), then go on in a thread."""
        self._poll_safely()
        if not self.leading:
            log.info("worker %s: another worker leads the scheduler; standing by", self.worker_id)
        self._thread = threading.Thread(target=self._run, name="scheduler-lead", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop trying and give the lead up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.poll_s + 15)
        self._leading.clear()
        self.leadership.release()

    def fence(self, job_id: str, fn: Callable[..., object]) -> Callable[..., None]:
        """Wrap a job so that it does its work only while this worker leads."""

        def fenced(*args: Any, **kwargs: Any) -> None:
            if not self.check():
                return
            fn(*args, **kwargs)

        fenced.__name__ = f"fenced_{job_id}"
        return fenced


def leader_poll_seconds(env: Mapping[str, str] | None = None) -> int:
    """``AGENTHUB_WORKER_LEADER_POLL_SECONDS``: how often a spare worker tries to lead."""
    env = os.environ if env is None else env
    return env_int(env, "AGENTHUB_WORKER_LEADER_POLL_SECONDS", DEFAULT_POLL_SECONDS, minimum=1)


def leadership_for(hub: Hub, worker_id: str) -> Leadership:
    """The advisory lock on PostgreSQL; a file lock in the data folder on SQLite."""
    if hub.db.is_sqlite:
        return FileLeadership(hub.settings.data_dir / "scheduler.lock")
    return PostgresLeadership(hub.db.hub, worker_id)


def lead_scheduler(
    hub: Hub,
    scheduler: BaseScheduler,
    worker_id: str,
    *,
    leadership: Leadership | None = None,
    poll_s: float | None = None,
) -> Elector:
    """Fence every job of ``scheduler`` (but :data:`UNFENCED_JOBS`) and start trying to lead.

    Call before ``scheduler.start()``; call :meth:`Elector.stop` after it returns.
    """
    elector = Elector(
        leadership or leadership_for(hub, worker_id),
        worker_id,
        poll_s=leader_poll_seconds() if poll_s is None else poll_s,
    )
    for job in scheduler.get_jobs():
        if job.id not in UNFENCED_JOBS:
            job.modify(func=elector.fence(job.id, job.func))
    elector.start()
    return elector
