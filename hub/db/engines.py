"""Engines for the hub schema and for each region's store.

PostgreSQL: one engine (one pool); the hub schema is ``hub`` and each region's tables live in
``region_<län>``, selected per region with ``schema_translate_map``. Embedded default (SQLite): one
file for the hub and one file per region under the data folder, so a region's data can be moved,
backed up or destroyed as a unit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from hub.config import Settings
from hub.contract.regions import LAN_CODE_RE
from hub.db.hub_tables import HUB_SCHEMA
from hub.db.region_tables import REGION_SCHEMA

T = TypeVar("T")


def region_schema_name(lan_code: str) -> str:
    """Return the schema name of a region; refuses anything that is not a two-digit län code."""
    if not LAN_CODE_RE.fullmatch(lan_code):
        raise ValueError("a län code is two digits")
    return f"region_{lan_code}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the worker read while the web process writes; busy_timeout waits instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# Seconds to wait for PostgreSQL to accept a connection (libpq's connect_timeout).
CONNECT_TIMEOUT_SECONDS = 5
# Milliseconds data sent to PostgreSQL may go unacknowledged before the connection is given up
# (libpq's tcp_user_timeout): with the connect timeout, a batch caught in a partition fails
# within COMMIT_WAIT_SECONDS (hub.inbound.groupcommit) rather than after TCP's quarter of an hour.
TCP_USER_TIMEOUT_MS = 10_000


def _make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 10}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Pre-ping: a connection left in the pool across a database restart or failover (or cut by
    # a firewall while idle) is replaced on checkout instead of failing the query that drew it.
    # Its round trip is off the hot path: a new inbound message is written on the group commit's
    # own connection (hub.inbound.groupcommit, which retries a lost one itself); only resends,
    # the worker and the CLI check connections out of this pool.
    # A database host that does not answer (a network fault, a failover in progress) fails a
    # connection attempt after CONNECT_TIMEOUT_SECONDS, and a statement or ping whose packets go
    # unacknowledged (a partition, a host gone in a failover) fails after TCP_USER_TIMEOUT_MS,
    # instead of the minutes TCP would wait. The URL's own parameters win.
    defaults = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "tcp_user_timeout": TCP_USER_TIMEOUT_MS}
    query = make_url(url).query
    connect_args = {name: value for name, value in defaults.items() if name not in query}
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_recycle=1800,
        pool_pre_ping=True,
        connect_args=connect_args,
        **kwargs,
    )


def read_once_more_if_lost(engine: Engine, read: Callable[[Connection], T]) -> T:
    """Run ``read`` on a pooled connection; should the connection be lost midway, once more.

    Pre-ping only checks a connection before it is lent: one lost during the query (a database
    restart or failover) fails it, and SQLAlchemy drops it from the pool. For reads only: a write
    may have committed before its connection was lost. A second loss is raised.
    """
    try:
        with engine.connect() as connection:
            return read(connection)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with engine.connect() as connection:
        return read(connection)


class Database:
    """Hands out the hub engine and one engine per region (created lazily, then reused)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._region_engines: dict[str, Engine] = {}
        self._base = _make_engine(settings.database_url)
        self.is_sqlite = settings.is_sqlite
        translate = {HUB_SCHEMA: None} if self.is_sqlite else {HUB_SCHEMA: HUB_SCHEMA}
        self.hub: Engine = self._base.execution_options(schema_translate_map=translate)

    def region_db_path(self, lan_code: str) -> Path:
        """Path of a region's SQLite file on the embedded default."""
        return self.settings.data_dir / "regions" / f"{region_schema_name(lan_code)}.db"

    def region(self, lan_code: str) -> Engine:
        """Return the engine that reads and writes one region's store, and nothing else."""
        schema = region_schema_name(lan_code)
        with self._lock:
            engine = self._region_engines.get(lan_code)
            if engine is None:
                if self.is_sqlite:
                    base = _make_engine(f"sqlite:///{self.region_db_path(lan_code)}")
                    engine = base.execution_options(schema_translate_map={REGION_SCHEMA: None})
                else:
                    engine = self._base.execution_options(
                        schema_translate_map={REGION_SCHEMA: schema}
                    )
                self._region_engines[lan_code] = engine
            return engine

    def forget_region(self, lan_code: str) -> None:
        """Drop a region's engine (after its store is destroyed)."""
        with self._lock:
            engine = self._region_engines.pop(lan_code, None)
        if engine is not None and self.is_sqlite:
            engine.dispose()

    def dispose(self) -> None:
        """Close every pool (tests, shutdown, after fork)."""
        with self._lock:
            engines = list(self._region_engines.values())
            self._region_engines.clear()
        for engine in engines:
            if self.is_sqlite:
                engine.dispose()
        self._base.dispose()
