"""Engines for the hub schema and for each region's store.

PostgreSQL: one engine (one pool); the hub schema is ``hub`` and each region's tables live in
``region_<län>``, selected per region with ``schema_translate_map``. Embedded default (SQLite): one
file for the hub and one file per region under the data folder, so a region's data can be moved,
backed up or destroyed as a unit.

SQLite files are the hub's alone: created mode 0600 (their ``-wal`` and ``-shm`` files follow the
database file's mode) in folders the hub creates 0700. A region's file is created only by
:meth:`Database.ensure_region_store` (onboarding, migrations); merely opening a store never
creates one (SQLite's ``mode=rw``), and a missing store is :class:`StoreMissing`, saying so. Each
connection remembers which file it opened; a file deleted or replaced under it is noticed when
the connection is next lent (it is replaced) and before any commit (:class:`StoreMissing`), so
nothing is committed into a file that is no longer the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError

from hub.config import Settings
from hub.contract.regions import LAN_CODE_RE
from hub.db.hub_tables import HUB_SCHEMA
from hub.db.region_tables import REGION_SCHEMA

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Where a pooled SQLite connection keeps the identity (device, inode) of the file it opened.
FILE_ID = "agenthub.file_id"


class StoreMissing(Exception):
    """A store's SQLite file is missing, empty, or was deleted or replaced while open.

    The text names the file (never its contents) and what to do.
    """


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) mode 0700; an existing folder is left as it is."""
    missing: list[Path] = []
    here = path
    while not here.exists():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)


def _create_private_file(path: Path) -> bool:
    """Create an empty file mode 0600 unless it exists; return whether it was created."""
    make_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


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


def _watch_sqlite_file(engine: Engine, path: Path, *, must_exist: bool) -> None:
    """Open ``path`` without ever creating it, and notice it being deleted or replaced."""
    what = f"the store {path}" if must_exist else f"the database {path}"

    def open_existing(
        _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> None:
        # SQLite creates a missing file on open; mode=rw opens only what is there.
        if must_exist:
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                raise StoreMissing(
                    f"{what} is missing: restore it from a backup (`agenthub db upgrade` "
                    "would create an empty one)"
                ) from None
            if size == 0:
                raise StoreMissing(f"{what} is empty: restore it from a backup")
        cargs[:] = [f"file:{urllib.parse.quote(str(path))}?mode=rw"]
        cparams["uri"] = True

    def remember(_dbapi_connection: Any, record: Any) -> None:
        record.info[FILE_ID] = _file_id(path)

    def still_there(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if _file_id(path) != record.info.get(FILE_ID):
            # Deleted or replaced (restored from a backup) since this connection opened it:
            # the pool opens a new connection, on the file that is there now (or none).
            raise DisconnectionError(f"{what} was deleted or replaced")

    def before_commit(connection: Connection) -> None:
        check_file(connection.info.get(FILE_ID), path, what)

    event.listen(engine, "do_connect", open_existing)
    event.listen(engine, "connect", remember)
    event.listen(engine, "checkout", still_there)
    event.listen(engine, "commit", before_commit)


def check_file(opened: tuple[int, int] | None, path: Path, what: str | None = None) -> None:
    """Raise :class:`StoreMissing` unless ``path`` is still the file a connection opened."""
    if opened is None or _file_id(path) != opened:
        raise StoreMissing(
            f"{what or path} was deleted or replaced while open: nothing is committed to it"
        )


def _make_engine(url: str, *, store: bool = False, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        database = make_url(url).database
        engine = create_engine(url, connect_args={"timeout": 10}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        if database and database != ":memory:":
            path = Path(database)
            if not store:
                # The hub's own file is made where it is first needed (serve, db upgrade).
                _create_private_file(path)
            _watch_sqlite_file(engine, path, must_exist=store)
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

    def ensure_region_store(self, lan_code: str) -> bool:
        """Create region ``lan_code``'s SQLite file (mode 0600) if it has none; True if created.

        The only place a region's file is made: onboarding and migrations call it, readers never.
        On PostgreSQL the schema is made by the migration itself (nothing to do here).
        """
        if not self.is_sqlite:
            return False
        path = self.region_db_path(lan_code)
        if path.exists() and path.stat().st_size > 0:
            return False
        _create_private_file(path)
        # A valid, empty SQLite database (header written), so that the store's engine opens it.
        connection = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=rw", uri=True)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()
        self.forget_region(lan_code)  # connections made before (to nothing) are dropped
        return True

    def check_region_file(self, lan_code: str, opened: tuple[int, int] | None) -> None:
        """Raise :class:`StoreMissing` unless region ``lan_code``'s file is still the one a
        connection opened (``opened``: its :data:`FILE_ID`); nothing to check on PostgreSQL."""
        if self.is_sqlite:
            path = self.region_db_path(lan_code)
            check_file(opened, path, f"the store {path}")

    def region(self, lan_code: str) -> Engine:
        """Return the engine that reads and writes one region's store, and nothing else."""
        schema = region_schema_name(lan_code)
        with self._lock:
            engine = self._region_engines.get(lan_code)
            if engine is None:
                if self.is_sqlite:
                    base = _make_engine(f"sqlite:///{self.region_db_path(lan_code)}", store=True)
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
