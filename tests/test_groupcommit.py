"""Group commit of inbound messages: shared transactions, resends, and one bad row among many."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.context import Hub
from hub.db import Database, region_schema_name
from hub.db.region_tables import messages
from hub.inbound import groupcommit
from hub.inbound.groupcommit import COMMIT_WAIT_SECONDS, GroupCommit, StoreError
from hub.tenancy.registry import MemberRegion
from tests.conftest import end_database_sessions
from tests.netns import cuttable_link_to, netns_problem


def _row(lan: str, content_hash: str | None = None, **changes: Any) -> dict[str, Any]:
    row = {
        "id": str(uuid.uuid4()),
        "received_at": datetime.now(UTC),
        "logical_address": lan,
        "sender_hsaid": "SE-test",
        "original_consumer_hsaid": None,
        "correlation_id": None,
        "content_hash": content_hash or uuid.uuid4().hex,
        "pnr_hash": uuid.uuid4().hex,
        "pnr_enc": os.urandom(40),
        "body_enc": os.urandom(300),
        "fields_enc": os.urandom(100),
        "kind": "information",
        "summary": {"exclusion": False},
        "result_code": "OK",
        "result_text": None,
        "delivery_state": "pending",
        "delivery_attempts": 0,
    }
    row.update(changes)
    return row


def _count(hub: Hub, lan: str) -> int:
    with hub.db.region(lan).connect() as connection:
        return int(connection.execute(select(func.count()).select_from(messages)).scalar_one())


class _Gate(GroupCommit):
    """A writer that holds its first batch until released, so later calls queue up behind it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.batches: list[int] = []
        self.arrived = 0  # calls ever queued, so a test knows when every call is in

    def _enqueue(self, pending: Any) -> None:
        super()._enqueue(pending)
        self.arrived += 1  # under the writer's lock

    def wait_arrived(self, count: int) -> None:
        """Return once ``count`` calls have queued (or after 10 s; the test's asserts then fail)."""
        deadline = time.monotonic() + 10
        while self.arrived < count and time.monotonic() < deadline:
            time.sleep(0.005)

    def _write(self, by_region: dict[str, list[Any]]) -> None:
        self.release.wait(10)
        self.batches.append(sum(len(items) for items in by_region.values()))
        super()._write(by_region)


def _insert_together(writer: _Gate, rows: list[dict[str, Any]]) -> list[Any]:
    """Insert each row from its own thread, as concurrent calls do; return what each call got.

    The gate holds the writer's first batch until every call is either in it or queued behind
    it, so what follows shows how calls in flight are batched.
    """
    results: list[Any] = [None] * len(rows)

    def run(index: int) -> None:
        try:
            results[index] = writer.insert(rows[index]["logical_address"], rows[index])
        except Exception as exc:  # the test looks at what each call got
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(rows))]
    for thread in threads:
        thread.start()
    writer.wait_arrived(len(rows))
    writer.release.set()
    for thread in threads:
        thread.join(10)
    return results


def test_calls_in_flight_share_a_batch_across_regions(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    a, b = regions_ab
    writer = _Gate(hub.db)
    try:
        rows = [_row(a.lan_code if i % 2 else b.lan_code) for i in range(12)]
        results = _insert_together(writer, rows)
        assert results == [True] * 12
        # Twelve calls in two batches (the held one, then the rest): at most four transactions,
        # since SQLite has one per region and batch, PostgreSQL one per batch.
        assert sum(writer.batches) == 12 and len(writer.batches) <= 4
        assert max(writer.batches) >= 5
        assert _count(hub, a.lan_code) == 6 and _count(hub, b.lan_code) == 6
    finally:
        writer.close()


def test_the_same_content_twice_in_one_batch_is_stored_once(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    a, b = regions_ab
    writer = _Gate(hub.db)
    try:
        blocker = _row(a.lan_code)
        same = uuid.uuid4().hex
        rows = [_row(a.lan_code, same), _row(a.lan_code, same), _row(b.lan_code, same)]
        results = _insert_together(writer, [blocker, *rows])
        # One of the two copies for A is new, the other a resend; B's store is its own.
        assert results[0] is True
        assert sorted(results[1:3]) == [False, True]
        assert results[3] is True
        assert _count(hub, a.lan_code) == 2 and _count(hub, b.lan_code) == 1
        # And a later resend of stored content is recognised too.
        assert writer.insert(a.lan_code, _row(a.lan_code, same)) is False
    finally:
        writer.close()


class _Recording(GroupCommit):
    """A writer that records its batch sizes and every time it held a batch open for calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []
        self.gathers = 0

    def _gather(self) -> None:
        self.gathers += 1
        super()._gather()

    def _write(self, by_region: dict[str, list[Any]]) -> None:
        self.batches.append(sum(len(items) for items in by_region.values()))
        super()._write(by_region)


@pytest.mark.parametrize("then", ["inserts", "withdraws"])
def test_a_batch_waits_for_a_call_on_its_way_and_no_longer(
    hub: Hub, add_region: Callable[..., MemberRegion], monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    region = add_region("14", "SE2321000131", "VGR")
    # A wait far longer than the test, so that only the second call's arrival can end it.
    monkeypatch.setattr(groupcommit, "GATHER_SECONDS", 30.0)
    writer = _Recording(hub.db)
    try:
        announced = threading.Event()
        second: list[Any] = []

        def on_its_way() -> None:
            # As receive() does: announced while it is validated, then it inserts, or it ends
            # without (an ERROR answer) and withdraws.
            writer.announce()
            try:
                announced.set()
                time.sleep(0.3)  # validating, while the first call leads
                if then == "inserts":
                    second.append(writer.insert(region.lan_code, _row(region.lan_code)))
            finally:
                writer.withdraw()

        thread = threading.Thread(target=on_its_way)
        thread.start()
        announced.wait(10)
        started = time.monotonic()
        assert writer.insert(region.lan_code, _row(region.lan_code)) is True
        waited = time.monotonic() - started
        thread.join(10)
        assert writer.gathers == 1
        assert 0.2 < waited < 20  # held for the second call, and released by it, not the timeout
        if then == "inserts":
            assert second == [True] and writer.batches == [2]  # one commit for both
        else:
            assert writer.batches == [1]
        assert _count(hub, region.lan_code) == 1 + len(second)
    finally:
        writer.close()


def test_a_call_that_comes_alone_is_written_at_once(
    hub: Hub, add_region: Callable[..., MemberRegion], monkeypatch: pytest.MonkeyPatch
) -> None:
    region = add_region("14", "SE2321000131", "VGR")
    monkeypatch.setattr(groupcommit, "GATHER_SECONDS", 30.0)
    writer = _Recording(hub.db)
    try:
        # Back to back, as from one client that waits for each answer, each announced as
        # receive() does: nobody else is on the way, so waiting would only slow that client.
        for _ in range(4):
            writer.announce()
            try:
                assert writer.insert(region.lan_code, _row(region.lan_code)) is True
            finally:
                writer.withdraw()
        assert writer.batches == [1] * 4 and writer.gathers == 0
    finally:
        writer.close()


def test_one_bad_row_fails_only_its_own_call(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    a, b = regions_ab
    writer = _Gate(hub.db)
    try:
        good = [_row(a.lan_code), _row(b.lan_code), _row(a.lan_code)]
        bad = _row(a.lan_code, kind=None)  # NOT NULL: the database refuses this row only
        results = _insert_together(writer, [good[0], bad, *good[1:]])
        assert results[0] is True and results[2] is True and results[3] is True
        assert isinstance(results[1], Exception)
        assert _count(hub, a.lan_code) == 2 and _count(hub, b.lan_code) == 1
    finally:
        writer.close()


def test_a_database_error_reaches_the_caller_without_parameters(
    hub: Hub, add_region: Callable[..., MemberRegion]
) -> None:
    region = add_region("14", "SE2321000131", "VGR")
    bad = _row(region.lan_code, kind=None)
    with pytest.raises(StoreError) as caught:
        hub.inbound.insert(region.lan_code, bad)
    assert "kind" in str(caught.value)  # names what the database refused...
    # ...but no value of the row, neither in its text nor in a chained exception.
    assert bad["pnr_hash"] not in str(caught.value) and bad["id"] not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    # The writer lives on after a failure.
    assert hub.inbound.insert(region.lan_code, _row(region.lan_code)) is True


def test_counts_per_region_are_logged_not_each_message(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = regions_ab
    same = uuid.uuid4().hex
    for row in (_row(a.lan_code), _row(a.lan_code, same), _row(a.lan_code, same), _row(b.lan_code)):
        hub.inbound.insert(row["logical_address"], row)
    with caplog.at_level(logging.INFO, logger="hub.inbound.groupcommit"):
        hub.inbound.log_summary()
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.inbound.groupcommit"]
    # How well calls shared commits: four calls, each alone (nothing else was in flight).
    assert any(line.startswith("4 messages written in 4 batches") for line in lines)
    assert any(
        line.startswith(f"region {a.lan_code}: 2 messages stored, 1 resends") for line in lines
    )
    assert any(
        line.startswith(f"region {b.lan_code}: 1 messages stored, 0 resends") for line in lines
    )


def test_a_forked_child_starts_afresh_and_close_waits_for_the_batch_being_written(
    hub: Hub, add_region: Callable[..., MemberRegion]
) -> None:
    region = add_region("14", "SE2321000131", "VGR")
    writer = _Gate(hub.db)
    writer.release.set()
    assert writer.insert(region.lan_code, _row(region.lan_code)) is True
    # As a forked child finds it: the parent's call queued and its leader mid-write, in threads
    # that do not exist in the child, and the lock perhaps held by one of them.
    parent_row = _row(region.lan_code)
    writer._queued.append(groupcommit._Pending(region.lan_code, parent_row))
    writer._writing = True
    writer._expected = 1  # a parent's call being validated, which will never come here
    writer._lock.acquire()
    writer._pid = -1
    assert writer.insert(region.lan_code, _row(region.lan_code)) is True
    assert writer._queued == [] and writer._writing is False and writer._expected == 0
    # The parent's call is the parent's to write: not written twice.
    assert _count(hub, region.lan_code) == 2

    # close() lets a batch being written finish before the connection goes back to the pool.
    writer.release.clear()
    results: list[Any] = []
    call = threading.Thread(
        target=lambda: results.append(writer.insert(region.lan_code, _row(region.lan_code)))
    )
    call.start()
    deadline = time.monotonic() + 10
    while not writer._writing and time.monotonic() < deadline:
        time.sleep(0.005)
    closing = threading.Thread(target=writer.close)
    closing.start()
    time.sleep(0.1)
    assert closing.is_alive()  # still waiting for the held batch
    writer.release.set()
    closing.join(10)
    call.join(10)
    assert results == [True] and not closing.is_alive() and writer._raw is None
    assert _count(hub, region.lan_code) == 3


def test_a_call_that_times_out_leaves_the_queue_and_never_leads(
    hub: Hub, add_region: Callable[..., MemberRegion], monkeypatch: pytest.MonkeyPatch
) -> None:
    region = add_region("14", "SE2321000131", "VGR")
    monkeypatch.setattr(groupcommit, "COMMIT_WAIT_SECONDS", 0.3)
    writer = _Gate(hub.db)
    results: list[Any] = [None, None]

    def call(index: int) -> None:
        try:
            results[index] = writer.insert(region.lan_code, _row(region.lan_code))
        except Exception as exc:  # the test looks at what each call got
            results[index] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    writer.wait_arrived(1)
    second = threading.Thread(target=call, args=(1,))
    second.start()
    second.join(10)  # gives up while the first call's batch is held
    assert isinstance(results[1], TimeoutError) and writer._queued == []
    writer.release.set()
    first.join(10)
    assert results[0] is True and writer._writing is False
    # The lead was not handed to the call that left: the next call is written at once.
    assert writer.insert(region.lan_code, _row(region.lan_code)) is True
    assert _count(hub, region.lan_code) == 2
    writer.close()


class _StallingLock:
    """The writer's lock, except that one thread, on releasing it, stalls until told to go on.

    It stands for the scheduler: a call that has just queued itself and let go of the lock may
    run again only after the leader has finished its batch and handed it the lead.
    """

    def __init__(self, stalls: str, until: threading.Event) -> None:
        self._lock = threading.Lock()
        self._stalls = stalls
        self._until = until
        self.stalled = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As threading.Lock."""
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        """As threading.Lock; the named thread then stalls once, until the event is set."""
        self._lock.release()
        if threading.current_thread().name == self._stalls and not self.stalled.is_set():
            self.stalled.set()
            self._until.wait(10)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_call_handed_the_lead_before_it_waits_leads_once(
    hub: Hub, add_region: Callable[..., MemberRegion]
) -> None:
    # The race: the leader finishes and hands the lead to a queued call that has not reached its
    # wait yet. That call must still take its hand-over before leading; reading the flag first
    # made it lead with its wake-up already spent, and its own settling then failed the batch.
    region = add_region("14", "SE2321000131", "VGR")
    handed = threading.Event()

    class Writer(_Gate):
        def _start_in_this_process(self) -> None:
            super()._start_in_this_process()
            self.stalling = _StallingLock("second call", handed)
            self._lock = self.stalling  # type: ignore[assignment]
            self._idle = threading.Condition(self._lock)  # type: ignore[arg-type]
            self._gathered = threading.Condition(self._lock)  # type: ignore[arg-type]

        def _lead(self) -> None:
            super()._lead()
            if threading.current_thread().name == "first call":
                handed.set()  # the lead has been handed on (or given up)

    writer = Writer(hub.db)
    results: dict[str, Any] = {}

    def call(name: str) -> None:
        try:
            results[name] = writer.insert(region.lan_code, _row(region.lan_code))
        except Exception as exc:  # the test looks at what each call got
            results[name] = exc

    first = threading.Thread(target=call, args=("first",), name="first call")
    first.start()
    writer.wait_arrived(1)
    second = threading.Thread(target=call, args=("second",), name="second call")
    second.start()
    assert writer.stalling.stalled.wait(10)  # queued behind the first call's batch, then stalled
    writer.release.set()  # the first batch is written, and the lead handed to the second call
    first.join(10)
    second.join(10)
    assert results == {"first": True, "second": True}
    assert writer.batches == [1, 1] and writer._writing is False
    assert _count(hub, region.lan_code) == 2
    writer.close()


def test_a_leader_that_breaks_after_its_batch_still_hands_the_lead_on(
    hub: Hub, add_region: Callable[..., MemberRegion], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bookkeeping after the commit (here the summary) fails once. The leader's own call hears of
    # it, but the process must not be left with nobody leading: the next call is written.
    region = add_region("14", "SE2321000131", "VGR")
    monkeypatch.setattr(groupcommit, "SUMMARY_SECONDS", 0.0)
    monkeypatch.setattr(groupcommit, "COMMIT_WAIT_SECONDS", 1.0)

    class Writer(GroupCommit):
        broke = False

        def log_summary(self, now: float | None = None) -> None:
            if not self.broke:
                self.broke = True
                raise RuntimeError("summary failed")
            super().log_summary(now)

    writer = Writer(hub.db)
    with pytest.raises(RuntimeError, match="summary failed"):
        writer.insert(region.lan_code, _row(region.lan_code))
    assert writer._writing is False
    assert writer.insert(region.lan_code, _row(region.lan_code)) is True
    assert _count(hub, region.lan_code) == 2
    writer.close()


def test_many_threads_with_resends_among_them_each_get_their_own_answer(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    # Many calls at once, the interpreter switching threads as often as it can, and each content
    # sent twice from two threads: every call is answered, once as new and once as a resend, and
    # each content is stored once. (The hand-over race has its own, deterministic test above.)
    a, b = regions_ab
    writer = GroupCommit(hub.db)
    contents = [(a.lan_code if i % 2 else b.lan_code, uuid.uuid4().hex) for i in range(120)]
    answers: dict[tuple[str, str], list[Any]] = {content: [] for content in contents}

    def sender(shift: int) -> None:
        # Threads 0-3 send every fourth content; thread 4 sends them all again, last one first,
        # so that the two copies of a content meet in one batch and across batches.
        for lan, content_hash in contents[shift::4] if shift < 4 else contents[::-1]:
            writer.announce()
            try:
                answer: Any = writer.insert(lan, _row(lan, content_hash))
            except Exception as exc:  # the test looks at what each call got
                answer = exc
            finally:
                writer.withdraw()
            answers[(lan, content_hash)].append(answer)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        # Four threads send each content once between them; a fifth sends every content again.
        threads = [threading.Thread(target=sender, args=(i,)) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(interval)
        writer.close()
    assert not any(thread.is_alive() for thread in threads)
    assert all(sorted(got) == [False, True] for got in answers.values()), answers
    assert _count(hub, a.lan_code) == 60 and _count(hub, b.lan_code) == 60


@pytest.fixture
def pg_region(postgresql_only: None, add_region: Callable[..., MemberRegion]) -> MemberRegion:
    """Region 14, on PostgreSQL only: what a server connection does, SQLite (a file) never does."""
    return add_region("14", "SE2321000131", "VGR")


def test_a_call_on_a_lost_database_connection_is_written_on_a_new_one(
    hub: Hub, settings: Any, pg_region: MemberRegion
) -> None:
    assert hub.inbound.insert(pg_region.lan_code, _row(pg_region.lan_code)) is True
    # The writer's own connection dies while idle, as in a database restart or failover.
    end_database_sessions(settings.database_url)
    # The call that finds it dead is not failed: its batch is written again on a new connection.
    assert hub.inbound.insert(pg_region.lan_code, _row(pg_region.lan_code)) is True
    assert hub.inbound.insert(pg_region.lan_code, _row(pg_region.lan_code)) is True
    assert _count(hub, pg_region.lan_code) == 3


def _lose_connections(
    monkeypatch: pytest.MonkeyPatch, *, times: int | None, after_commit: bool
) -> list[int]:
    """Make the writer's first ``times`` statements (None: all) break their connection.

    With ``after_commit`` the statement commits first and the answer is what is lost. Returns
    the list of broken statements, each as how many rows it had stored.
    """
    import psycopg2

    real = GroupCommit._insert_postgresql
    broken: list[int] = []

    def insert(self: GroupCommit, cursor: Any, shares: Any) -> Any:
        if times is not None and len(broken) >= times:
            return real(self, cursor, shares)
        new = real(self, cursor, shares) if after_commit else [set()]
        broken.append(len(new[0]))
        cursor.connection.close()
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(GroupCommit, "_insert_postgresql", insert)
    return broken


def test_a_batch_whose_commit_was_lost_with_its_connection_is_stored_once(
    hub: Hub, pg_region: MemberRegion, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = GroupCommit(hub.db)
    broken = _lose_connections(monkeypatch, times=1, after_commit=True)
    row = _row(pg_region.lan_code)
    # Written again on a new connection, the row is already there: the call hears "stored
    # before", and its caller answers with the stored answer (hub.inbound.store), never a fault.
    assert writer.insert(pg_region.lan_code, row) is False
    assert broken == [1]
    assert _count(hub, pg_region.lan_code) == 1
    with hub.db.region(pg_region.lan_code).connect() as connection:
        stored_id = connection.execute(select(messages.c.id)).scalar_one()
    assert stored_id == row["id"]  # the answer names the message this very call stored
    writer.close()


def test_a_database_that_stays_down_fails_the_call_after_one_more_try(
    hub: Hub, pg_region: MemberRegion, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = GroupCommit(hub.db)
    tries = _lose_connections(monkeypatch, times=None, after_commit=False)
    row = _row(pg_region.lan_code)
    with pytest.raises(StoreError, match="OperationalError") as raised:
        writer.insert(pg_region.lan_code, row)
    assert row["pnr_hash"] not in str(raised.value)
    assert len(tries) == 2  # once, and once more on a new connection: no endless retrying
    assert writer._raw is None  # nothing dead is kept for the next batch
    writer.close()


def test_a_batch_held_up_by_a_lock_is_cancelled_in_time_and_not_retried_row_by_row(
    hub: Hub, settings: Any, pg_region: MemberRegion
) -> None:
    import psycopg2

    writer = _Gate(hub.db)
    writer.statement_timeout_ms = 300
    # Someone holds the table (a migration, say) for longer than any call may wait.
    locker = psycopg2.connect(settings.database_url.replace("postgresql+psycopg2", "postgresql"))
    try:
        with locker.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {region_schema_name(pg_region.lan_code)}.messages")
        results = _insert_together(writer, [_row(pg_region.lan_code) for _ in range(3)])
    finally:
        locker.rollback()
        locker.close()
    assert all(isinstance(r, StoreError) and "QueryCanceled" in str(r) for r in results), results
    # The leader's own call and the two queued behind it, each batch cancelled once: retrying
    # row by row would wait the timeout again for every row while the calls time out.
    assert writer.batches == [1, 2]
    # A cancelled statement leaves the connection usable: once the lock is gone, calls are stored.
    connection = writer._raw
    assert writer.insert(pg_region.lan_code, _row(pg_region.lan_code)) is True
    assert writer._raw is connection
    assert _count(hub, pg_region.lan_code) == 1
    writer.close()


def test_a_batch_caught_in_a_network_partition_fails_within_seconds(
    hub: Hub, settings: Any, pg_region: MemberRegion
) -> None:
    if problem := netns_problem():
        pytest.skip(problem)
    with cuttable_link_to(("127.0.0.1", 5432)) as link:
        across = settings.database_url.replace("127.0.0.1:5432", f"{link.host}:{link.port}")
        assert across != settings.database_url
        db = Database(settings.with_overrides(database_url=across))
        writer = GroupCommit(db)
        assert writer.insert(pg_region.lan_code, _row(pg_region.lan_code)) is True
        # The database host vanishes in the middle of the next batch: no reset, no error.
        link.cut()
        outcome: list[Any] = []

        def call() -> None:
            try:
                outcome.append(writer.insert(pg_region.lan_code, _row(pg_region.lan_code)))
            except Exception as exc:  # what the call got
                outcome.append(exc)

        caught = threading.Thread(target=call, daemon=True)
        caught.start()
        # TCP alone would retransmit for about 15 minutes. The statement's unacknowledged data
        # ends it after hub.db.TCP_USER_TIMEOUT_MS, a new connection after its connect timeout.
        caught.join(COMMIT_WAIT_SECONDS + 5)
        link.heal()
        assert outcome, "the call is still waiting for a database it cannot reach"
        assert isinstance(outcome[0], StoreError), outcome
        assert writer._raw is None  # the dead connection is not kept
        db.dispose()
    assert _count(hub, pg_region.lan_code) == 1


def test_the_writer_hands_its_connection_back_transactional(
    hub: Hub, pg_region: MemberRegion
) -> None:
    # The group commit keeps a connection of its own on PostgreSQL only.
    writer = GroupCommit(hub.db)
    assert writer.insert(pg_region.lan_code, _row(pg_region.lan_code)) is True
    assert writer._raw is not None
    dbapi = writer._raw.dbapi_connection
    assert dbapi is not None and dbapi.autocommit  # one statement per batch, no BEGIN/COMMIT
    assert _setting(dbapi, "statement_timeout") == "20s"  # groupcommit.STATEMENT_TIMEOUT_MS
    writer.close()
    # Back in the pool it must behave like every other connection: transactions, not autocommit,
    # and no time limit meant for the writer's own statements.
    assert writer._raw is None and dbapi.autocommit is False
    assert _setting(dbapi, "statement_timeout") == "0"


def _setting(dbapi: Any, name: str) -> str:
    with dbapi.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        value = str(cursor.fetchone()[0])
    dbapi.rollback()
    return value
