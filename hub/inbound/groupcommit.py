"""Group commit for inbound messages: many request threads, one transaction per region and batch.

Storing a call costs a transaction, and a commit waits for the write-ahead log to reach the disk.
Under load, the calls in flight at the same moment are written together. A call that arrives
while no batch is being written leads: in its own thread it waits for the calls announced as on
their way (being validated; at most 2 ms), takes every message queued so far and writes them
with one statement (PostgreSQL: every region's share in one round trip; SQLite: one transaction
per region file). Only once that has committed does it wake the other calls of the batch, which
answer, and hand the lead to the first call that queued meanwhile.
An answer therefore still means "committed"; what is shared is the round trips and the disk wait.
No thread of its own: a writer thread cost every call two more context switches and a turn at
the GIL (bench/inbound.py).

A message is stored only while its region is live under the key it was sealed with: in the same
transaction as the insert (PostgreSQL: the same statement), the region's key row must still hold
the very key (as wrapped) that the row was sealed with. Ending a region changes that row (the key
is destroyed, or wrapped anew), so a call for a region another process ended a moment ago is
refused (:class:`RegionClosed`), never stored under a key that is gone or for a region that is
over; web processes need no query per call to learn of an end, only one primary-key lookup per
region and batch.

A resend is caught by the unique content hash (``ON CONFLICT DO NOTHING``), also when both copies
arrive in the same batch. When a batch fails as a whole, each of its messages is retried in a
transaction of its own, so one bad row fails only its own call. A batch whose connection was lost
(PostgreSQL restarted, failed over, or an idle connection was cut) is written again once on a new
connection before any call of it fails.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg2
from psycopg2 import sql
from sqlalchemy import JSON, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

from hub.db import Database, region_schema_name
from hub.db.engines import FILE_ID, StoreMissing
from hub.db.hub_tables import HUB_SCHEMA, region_keys
from hub.db.region_tables import messages

log = logging.getLogger(__name__)

# Longest wait for a commit before the call gives up with a Server fault: below the platform's
# 29 s producer timeout, so the caller hears a fault rather than a timeout. A message committed
# after that is answered OK as a resend when the platform retries it.
COMMIT_WAIT_SECONDS = 25.0
# Longest a batch's statement may run in PostgreSQL (a lock held by a migration, a stalled
# disk): it is then cancelled and its calls get a Server fault, inside COMMIT_WAIT_SECONDS and
# the platform's 29 s, rather than the leader waiting with no end while later calls pile up.
STATEMENT_TIMEOUT_MS = 20_000
# Upper bound on one batch: keeps a statement's size and the time a batch holds locks small.
MAX_BATCH = 64
# How often the group commit logs how many messages it stored per region (INFO).
SUMMARY_SECONDS = 60.0
# A leader holds its batch open for calls already on their way to it (announced, being
# validated), at most this long: a commit shared by several calls costs PostgreSQL much less per
# call than a commit each, and the wait doubled the batch size under load (bench/inbound.py). A
# call that comes alone (a quiet night, or a client that sends one call after another) has
# nobody to wait for and is written at once.
GATHER_SECONDS = 0.002


# SQLite (the embedded default): SQLAlchemy's insert; ON CONFLICT and RETURNING tell which rows
# were new. Each region is its own file, so the statement needs no schema.
_SQLITE_INSERT = (
    sqlite.insert(messages)
    .on_conflict_do_nothing(index_elements=[messages.c.content_hash])
    .returning(messages.c.content_hash)
)
# The PostgreSQL path names columns itself: only the table's own are allowed, and JSON ones are
# sent as text (psycopg2 does not encode a dict; PostgreSQL casts the text).
_COLUMNS = frozenset(c.name for c in messages.columns)
_JSON_COLUMNS = frozenset(c.name for c in messages.columns if isinstance(c.type, JSON))
# A guarded share inserts from a VALUES list behind a WHERE (see _insert_postgresql), where
# PostgreSQL cannot take a column's type from the target: each value is cast to it.
_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_PG_TYPES = {c.name: c.type.compile(dialect=_PG_DIALECT) for c in messages.columns}
# The key a region is live under now (as wrapped; None once destroyed).
_LIVE_KEY = select(region_keys.c.wrapped_key)
# The guard of a share on PostgreSQL (one primary-key lookup, in the insert's own statement).
_PG_GUARD = "EXISTS (SELECT 1 FROM hub.region_keys WHERE lan_code = %s AND wrapped_key = %s)"
assert HUB_SCHEMA == "hub"  # named in _PG_GUARD, the one statement not built by SQLAlchemy


class StoreError(Exception):
    """The database refused a message row. The text names the error, never the row's values."""


class RegionClosed(Exception):
    """Nothing was stored: when the batch was written the region was ended, or its key was not
    (any more) the one the row was sealed with (destroyed, or replaced by ``region reinstate``).
    """


def _without_values(exc: BaseException) -> BaseException:
    # PostgreSQL's own text may quote the row ("DETAIL: Failing row contains (...)"), and the
    # statement's parameters are its personal data: keep only the first line of the server's
    # message, and break the chain so no traceback carries the original either.
    if not isinstance(exc, (DBAPIError, psycopg2.Error)):
        return exc
    origin = _driver_error(exc)
    first_line = (str(origin).strip().splitlines() or [""])[0]
    return StoreError(f"{type(origin).__name__}: {first_line}")


def _held_lock() -> Any:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)
class _Pending:
    lan_code: str
    row: dict[str, Any]
    # Held from the start; released when the call is settled, or to make it lead (``leads``).
    # A bare lock, not an Event: an Event builds a Condition per call and waits through it.
    done: Any = field(default_factory=_held_lock)
    leads: bool = False
    settled: bool = False
    inserted: bool = False
    error: BaseException | None = None
    # The region key the row is sealed with (RegionCipher.key_ref); None: stored unguarded.
    key_ref: bytes | None = None
    closed: bool = False


class GroupCommit:
    """Inserts inbound message rows for many threads, sharing transactions between them."""

    def __init__(self, db: Database, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self.statement_timeout_ms = STATEMENT_TIMEOUT_MS
        self._stored: dict[str, int] = {}
        self._resends: dict[str, int] = {}
        self._batches = 0
        self._summary_at = time.monotonic()
        # The leaders' statements by schema and columns.
        self._statements: dict[tuple[str, tuple[str, ...], bool], bytes] = {}
        self._start_in_this_process()

    def _start_in_this_process(self) -> None:
        # What belongs to one process: built here, and again in a forked child, where what the
        # parent queued is the parent's to write, its connection is the parent's, and its lock
        # may have been held by a thread that does not exist in the child.
        self._lock = threading.Lock()
        # Calls waiting for a batch; while nobody leads (``_writing`` false) it is empty.
        self._queued: list[_Pending] = []
        self._writing = False
        self._idle = threading.Condition(self._lock)
        # Calls announced (on their way to insert) and not yet queued; the leader waits for them.
        self._expected = 0
        self._gathering = False
        self._gathered = threading.Condition(self._lock)
        self._local = threading.local()  # .announced: this thread's call is counted
        # The leaders' PostgreSQL connection (one leader at a time).
        self._raw: PoolProxiedConnection | None = None
        self._pid = os.getpid()

    def insert(self, lan_code: str, row: dict[str, Any], key_ref: bytes | None = None) -> bool:
        """Insert one message row into a region's store; wait until it is committed.

        Returns False when a message with the same content hash was already stored (a resend).
        With ``key_ref`` (the key the row is sealed with) the row is stored only if, in the same
        transaction, the region is not ended and its key is still that one; else
        :class:`RegionClosed`. Raises what the database raised for this row, or TimeoutError
        when no commit came in time.
        """
        pending = _Pending(lan_code, row, key_ref=key_ref)
        if self._pid != os.getpid():
            self._start_in_this_process()
        with self._lock:
            self._enqueue(pending)
            leads = not self._writing
            self._writing = True
        while True:
            if leads:
                self._lead()
            self._wait(pending)
            if pending.settled:
                break
            # Not settled, so ``done`` was released to hand this call the lead.
            leads, pending.leads = pending.leads, False
        if pending.error is not None:
            raise pending.error
        if pending.closed:
            raise RegionClosed(f"region {lan_code} is ended or its key is not the row's")
        return pending.inserted

    def _wait(self, pending: _Pending) -> None:
        """Wait until the call is settled or handed the lead (either releases ``done``).

        Only after taking ``done`` may the call read why it was woken: read before, a hand-over
        that came in between would have it lead while ``done`` is already released, and its own
        settling would then release it a second time (a fault for every call of that batch).
        """
        if pending.done.acquire(timeout=COMMIT_WAIT_SECONDS):
            return
        with self._lock:
            # Made leader, or settled, at the last moment: ``done`` is (about to be) released.
            if not (pending.leads or pending.settled):
                # Never written now, and never handed the lead: nobody would take it.
                if pending in self._queued:
                    self._queued.remove(pending)
                raise TimeoutError("the message store did not commit in time")
        pending.done.acquire()

    def announce(self) -> None:
        """Tell that this thread's call is on its way to :meth:`insert` (it is being validated).

        A leader holds its batch open for announced calls (at most ``GATHER_SECONDS``). Pair it
        with :meth:`withdraw` in a ``finally``: a call that ends without inserting (an ERROR
        answer, a failure) must not keep a batch waiting.
        """
        with self._lock:
            self._expected += 1
        self._local.announced = True

    def withdraw(self) -> None:
        """End this thread's announcement if :meth:`insert` has not already (else nothing)."""
        if getattr(self._local, "announced", False):
            with self._lock:
                self._arrived()

    def _enqueue(self, pending: _Pending) -> None:
        # Under self._lock.
        self._queued.append(pending)
        self._arrived()

    def _arrived(self) -> None:
        # Under self._lock. The leader is woken once, when the last call it waits for is in:
        # a wake-up per call would be a context switch and a turn at the GIL each.
        if getattr(self._local, "announced", False):
            self._local.announced = False
            self._expected -= 1
            if self._gathering and self._expected <= 0:
                self._gathered.notify()

    def close(self) -> None:
        """Let a batch being written finish, then hand the connection back to the pool."""
        if self._pid != os.getpid():
            return  # a forked child's copy holds the parent's connection: not ours to close
        with self._lock:
            idle = self._idle.wait_for(lambda: not self._writing, COMMIT_WAIT_SECONDS)
        if not idle:
            return  # a batch still hangs in the database; its leader keeps the connection
        if self._raw is not None:
            self._release()
        self.log_summary()

    def _lead(self) -> None:
        """Write one batch from the head of the queue, then hand the lead on or give it up."""
        with self._lock:
            if self._expected > 0 and len(self._queued) < self.max_batch:
                self._gather()
            batch = self._queued[: self.max_batch]
            del self._queued[: self.max_batch]
        try:
            self._write_batch(batch)
        finally:
            try:
                for item in batch:
                    if not item.settled:  # only if writing itself broke: the caller must not hang
                        item.error = StoreError("the batch could not be written")
                        self._finish(item)
                now = time.monotonic()
                if now - self._summary_at >= SUMMARY_SECONDS:
                    # While this thread still leads: the counts are only ever touched by the leader.
                    self.log_summary(now)
            finally:
                # Whatever broke above, the lead moves on: with nobody leading and ``_writing``
                # still set, every later call of this process would wait for a batch in vain.
                self._hand_on()

    def _hand_on(self) -> None:
        """Hand the lead to the first call queued meanwhile, or give it up when there is none."""
        with self._lock:
            if self._queued:
                following = self._queued[0]
                following.leads = True
                following.done.release()
            else:
                self._writing = False
                self._idle.notify_all()

    def _write_batch(self, batch: list[_Pending]) -> None:
        self._batches += 1
        by_region: dict[str, list[_Pending]] = {}
        for item in batch:
            by_region.setdefault(item.lan_code, []).append(item)
        if self.db.is_sqlite:
            # One file per region: a transaction cannot span two regions.
            for lan_code, items in by_region.items():
                self._write({lan_code: items})
        else:
            # One database holds every region's schema: one transaction (one commit, one wait
            # for the disk) covers the whole batch.
            self._write(by_region)

    def _gather(self) -> None:
        # Under self._lock, which the wait releases: the announced calls queue meanwhile.
        self._gathering = True
        try:
            self._gathered.wait(GATHER_SECONDS)
        finally:
            self._gathering = False

    def _finish(self, item: _Pending) -> None:
        # Counted before the caller is woken, so a summary never lags behind an answer.
        if item.error is None and not item.closed:
            counts = self._stored if item.inserted else self._resends
            counts[item.lan_code] = counts.get(item.lan_code, 0) + 1
        item.settled = True
        item.done.release()

    def log_summary(self, now: float | None = None) -> None:
        """Log (INFO) the messages stored and the resends answered per region since last time."""
        now = time.monotonic() if now is None else now
        if self._batches:
            # How well calls share commits: few messages per batch means a commit each.
            log.info(
                "%d messages written in %d batches in the last %.0f s",
                sum(self._stored.values()) + sum(self._resends.values()),
                self._batches,
                now - self._summary_at,
            )
        for lan_code in sorted(set(self._stored) | set(self._resends)):
            log.info(
                "region %s: %d messages stored, %d resends answered in the last %.0f s",
                lan_code,
                self._stored.get(lan_code, 0),
                self._resends.get(lan_code, 0),
                now - self._summary_at,
            )
        self._stored, self._resends, self._summary_at = {}, {}, now
        self._batches = 0

    def _write(self, by_region: dict[str, list[_Pending]]) -> None:
        """Write a batch in one transaction; should it fail, each region alone, then each call."""
        try:
            settles = self._transaction(by_region)
        except Exception as exc:
            # Split only over a row's values: when the database itself failed (down, timed out,
            # locked), trying each region and each row alone would only repeat the wait, once
            # per row, while calls time out.
            split = not _database_failed(exc)
            if split and len(by_region) > 1:
                for lan_code, items in by_region.items():
                    self._write({lan_code: items})
                return
            if split and len(next(iter(by_region.values()))) > 1:
                # One bad row must not fail the others: each is tried in a transaction of its own.
                ((lan_code, items),) = by_region.items()
                log.warning(
                    "region %s: batch of %d failed; writing one by one", lan_code, len(items)
                )
                for item in items:
                    self._write({lan_code: [item]})
                return
            # It travels to the request threads, which log it: no values in a log.
            error = _without_values(exc)
            for items in by_region.values():
                for item in items:
                    item.error = error
                    self._finish(item)
            return
        for settle in settles:
            settle()
        for items in by_region.values():
            for item in items:
                self._finish(item)

    def _transaction(self, by_region: dict[str, list[_Pending]]) -> list[Callable[[], None]]:
        """Insert each region's share and commit; return what marks each call once committed."""
        if self.db.is_sqlite:
            ((lan_code, items),) = by_region.items()
            # The region's file and the hub's are two databases: the registry is read first, and
            # that read is where the batch takes its place before or after an end committed by
            # another process (as a PostgreSQL statement's snapshot is, below).
            live = self._live_key(lan_code) if any(i.key_ref for i in items) else None
            admitted: list[_Pending] = []
            refused: list[_Pending] = []
            for item in items:
                (admitted if item.key_ref is None or item.key_ref == live else refused).append(item)
            settles = [_settler(refused, {}, None)]
            if admitted:
                # The region's own engine points at its own file.
                with self.db.region(lan_code).begin() as connection:
                    first_of = _first_copies(admitted)
                    rows = [item.row for item in first_of.values()]
                    new = {row[0] for row in connection.execute(_SQLITE_INSERT, rows)}
                    opened = connection.info.get(FILE_ID)
                # Committed into the file this connection opened; an answer OK must also mean
                # it can be read again: that file must still be the store (not deleted, not
                # replaced while the batch was written), or the calls get a Server fault and the
                # platform sends them again.
                self.db.check_region_file(lan_code, opened)
                settles.append(_settler(admitted, first_of, new))
            return settles
        # A share: one region's rows sealed with one key (a region has one key, except for the
        # calls in flight when another process replaced it).
        groups: list[tuple[str, bytes | None, list[_Pending]]] = []
        for lan_code, items in by_region.items():
            by_key: dict[bytes | None, list[_Pending]] = {}
            for item in items:
                by_key.setdefault(item.key_ref, []).append(item)
            groups.extend((lan_code, key_ref, share) for key_ref, share in by_key.items())
        firsts = [_first_copies(share) for _, _, share in groups]
        shares = [
            (
                region_schema_name(lan_code),
                [item.row for item in first_of.values()],
                None if key_ref is None else (lan_code, key_ref),
            )
            for (lan_code, key_ref, _), first_of in zip(groups, firsts, strict=True)
        ]
        for attempt in (1, 2):
            connection = self._postgresql()
            try:
                with connection.cursor() as cursor:
                    new_by_share = self._insert_postgresql(cursor, shares)
                break
            except Exception:
                if not self._after_failure(connection) or attempt == 2:
                    raise  # _write keeps only the first line of the driver's text (no row values)
                # The connection was lost (a database restart or failover, or an idle connection
                # cut by a firewall overnight): write the batch again, once, on a new one, rather
                # than fail every call of it. Safe even if the lost statement did commit: ON
                # CONFLICT then reports those rows as already stored, and each call answers with
                # the stored answer, which is its own (same content, same message id).
                log.warning("database connection lost while writing a batch; writing it again")
        outcome: list[set[str] | None] = list(new_by_share)
        for index, (lan_code, key_ref, _) in enumerate(groups):
            if key_ref is not None and not outcome[index] and self._live_key(lan_code) != key_ref:
                # Nothing of a guarded share went in: all resends, or its guard refused it. The
                # key's row says which (an end changes it; it never changes back).
                outcome[index] = None
        return [
            _settler(share, first_of, new)
            for (_, _, share), first_of, new in zip(groups, firsts, outcome, strict=True)
        ]

    def _live_key(self, lan_code: str) -> bytes | None:
        """The key (as wrapped) region ``lan_code`` is live under now; None when it has none."""
        with self.db.hub.connect() as connection:
            value = connection.execute(_LIVE_KEY.where(region_keys.c.lan_code == lan_code)).scalar()
        return None if value is None else bytes(value)

    def _postgresql(self) -> Any:
        # The leaders keep one connection of their own, straight psycopg2: SQLAlchemy's checkout,
        # begin and statement compilation per batch were a large share of the writer's CPU, and
        # the writer a large share of a web process's (py-spy under bench/inbound.py). It runs in
        # autocommit: a batch is one statement, atomic by itself, so BEGIN and COMMIT, a round
        # trip each (and most of a batch's client CPU), are not needed.
        if self._raw is None:
            raw = self.db.hub.raw_connection()
            try:
                raw.dbapi_connection.autocommit = True  # type: ignore[union-attr]
                with raw.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
                    cursor.execute("SET statement_timeout = %s", (self.statement_timeout_ms,))
            except Exception:
                raw.invalidate()
                raise
            self._raw = raw
        return self._raw.dbapi_connection

    def _release(self) -> None:
        # Back to the pool as the transactional connection everyone else expects.
        assert self._raw is not None
        raw, self._raw = self._raw, None
        try:
            with raw.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
                cursor.execute("RESET statement_timeout")  # the pool's users set their own
            raw.dbapi_connection.autocommit = False  # type: ignore[union-attr]
        except Exception:
            raw.invalidate()
            return
        raw.close()

    def _after_failure(self, connection: Any) -> bool:
        """Drop a lost connection, so that the next attempt opens a new one; True if it was lost.

        A refused statement left nothing behind (autocommit) and keeps the connection.
        """
        assert self._raw is not None
        if not connection.closed:
            return False
        self._raw.invalidate()
        self._raw = None
        return True

    def _insert_postgresql(
        self, cursor: Any, shares: list[tuple[str, list[dict[str, Any]], tuple[str, bytes] | None]]
    ) -> list[set[str] | None]:
        """Insert each share's rows, all in one statement; return each share's new content hashes.

        A share is (schema, rows, guard); a guard (län code, key as wrapped) admits the rows only
        if the region's key row holds that key, judged in this statement's snapshot (an end
        committed before it started is seen; one committed later orders after this batch). A
        guarded share's rows are selected from their VALUES list behind that condition.
        One region: ``INSERT … RETURNING``. Several: one data-modifying CTE per region, whose
        results the outer SELECT tags with the share's index. Either way one round trip, and the
        statement commits or fails as a whole.
        """
        parts: list[bytes] = []
        for schema, rows, guard in shares:
            columns = tuple(rows[0])
            if any(tuple(row) != columns for row in rows) or not set(columns) <= _COLUMNS:
                raise ValueError("message rows of one batch must have the same, known columns")
            guarded = guard is not None
            head = self._statements.get((schema, columns, guarded))
            if head is None:
                # The schema name comes from region_schema_name (two digits); composed once.
                into = sql.SQL(
                    "INSERT INTO {}.messages ({}) SELECT * FROM (VALUES "
                    if guarded
                    else "INSERT INTO {}.messages ({}) VALUES "
                )
                head = (
                    into.format(
                        sql.Identifier(schema), sql.SQL(", ").join(map(sql.Identifier, columns))
                    )
                    .as_string(cursor)
                    .encode()
                )
                self._statements[(schema, columns, guarded)] = head
            json_at = [i for i, name in enumerate(columns) if name in _JSON_COLUMNS]
            values: list[Any] = []
            for row in rows:
                value = list(row.values())
                for i in json_at:
                    # psycopg2 does not encode a dict; PostgreSQL casts the text.
                    value[i] = orjson.dumps(value[i]).decode()
                values.extend(value)
            # One mogrify for the whole VALUES list (execute_values mogrifies row by row and
            # re-tokenises the statement every batch: a sixth of the writer's CPU).
            if guarded:
                # Behind a WHERE the VALUES list cannot take its types from the target: cast.
                row_template = "(" + ",".join(f"%s::{_PG_TYPES[c]}" for c in columns) + ")"
            else:
                row_template = "(" + ",".join(["%s"] * len(columns)) + ")"
            part = head + cursor.mogrify(",".join([row_template] * len(rows)), values)
            if guard is not None:
                part += b") AS v WHERE " + cursor.mogrify(_PG_GUARD, guard)
            parts.append(part + b" ON CONFLICT (content_hash) DO NOTHING RETURNING content_hash")
        if len(parts) == 1:
            cursor.execute(parts[0])
            return [{row[0] for row in cursor.fetchall()}]
        ctes = b", ".join(b"s%d AS (%s)" % (i, part) for i, part in enumerate(parts))
        union = b" UNION ALL ".join(
            b"SELECT %d, content_hash FROM s%d" % (i, i) for i in range(len(parts))
        )
        cursor.execute(b"WITH " + ctes + b" " + union)
        new: list[set[str] | None] = [set() for _ in parts]
        for index, content_hash in cursor.fetchall():
            hashes = new[index]
            assert hashes is not None
            hashes.add(content_hash)
        return new


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception inside SQLAlchemy's wrapper (or ``exc`` itself)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def _database_failed(exc: BaseException) -> bool:
    """True when the database failed as such (lost, timed out, locked), not over a row's values."""
    exc = _driver_error(exc)
    # psycopg2's QueryCanceledError (statement timeout) and a lost connection are both
    # OperationalErrors, as are SQLite's "database is locked" and disk errors.
    # A store file deleted or replaced under it is the database failing too.
    return isinstance(exc, (psycopg2.OperationalError, sqlite3.OperationalError, StoreMissing))


def _first_copies(items: Sequence[_Pending]) -> dict[str, _Pending]:
    # The same content twice in one batch: only the first copy goes to the database.
    first_of: dict[str, _Pending] = {}
    for item in items:
        first_of.setdefault(item.row["content_hash"], item)
    return first_of


def _settler(
    items: Sequence[_Pending], first_of: dict[str, _Pending], new: set[str] | None
) -> Callable[[], None]:
    # ``new`` None: the share's region was not live under its key; none of it was stored.
    def settle() -> None:
        for item in items:
            if new is None:
                item.closed = True
                continue
            item.inserted = first_of[item.row["content_hash"]] is item and (
                item.row["content_hash"] in new
            )

    return settle


__all__ = ["COMMIT_WAIT_SECONDS", "GroupCommit", "RegionClosed", "StoreError"]
