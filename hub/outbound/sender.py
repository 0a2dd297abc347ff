"""The senders: one per destination län code, with a rate cap and fair sharing among regions.

A :class:`Dispatcher` lives in the worker process. One coordinator thread does all the database
work and the scheduling; a pool of threads does only the HTTP calls:

- for every destination with due records it claims a few, taking them in turn from every member
  region's outbox (rotating the starting region), so a region with 10,000 queued records cannot
  starve a region with ten: a destination's capacity is shared, not first come first served;
- it hands them to the call pool no faster than the destination's rate cap (a fixed schedule,
  :class:`RateLimiter`) and with at most ``concurrency`` calls in flight per destination, so one
  slow producer neither exceeds its cap nor holds up the others;
- it writes the finished attempts in batches, one transaction per region, and moves each record
  on by the rule #22 resend policy (:func:`hub.outbound.queue.record_attempts`).

A claim never runs out under a record this process still holds: a call has a hard deadline
(:attr:`DestinationPolicy.deadline_s`, the whole exchange), and before a call, and while records
wait their turn, their claims are renewed to outlast it. So a claim expires only when its worker
stopped, and then the next claim logs the lost attempt (:func:`hub.outbound.queue.claim`): each
attempt is counted once and recorded once. :meth:`Dispatcher.close` (the worker's SIGTERM) cuts the
calls in flight short, records them as ``INTERRUPTED`` and gives back what was claimed but not
called, so the worker stops within seconds.

Only member regions whose agreement is active are sent; the list is read again every poll
interval, and a region that ended meanwhile has what it still had claimed given back unsent.

Keeping the database work in one thread is deliberate: twenty threads each claiming and writing
for their own destination spent their time waiting for each other (SQLite's write lock, and the
interpreter lock) instead of sending.

The worker's scheduler calls :meth:`Dispatcher.tick` every second, which starts the coordinator
if it is not running; tests and the demo call :func:`run_senders_once` or :func:`drain` instead.
Rate caps hold per worker process; the design runs exactly one scheduler (docs/architecture.md).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hub.clock import swedish_today, utcnow
from hub.context import Hub
from hub.db import StoreMissing
from hub.drops.state import Backoff
from hub.outbound.client import CallResult, NtjpClient
from hub.outbound.enqueue import matches_its_approval
from hub.outbound.queue import (
    Attempt,
    Claimed,
    Transition,
    claim,
    due_destinations,
    next_due_at,
    pending_count,
    record_attempts,
    renew,
    unclaim,
)
from hub.outbound.receipts import write_receipts
from hub.outbound.settings import ConsumerSettings, DestinationPolicy, load_consumer_settings
from hub.outbound.states import DELIVERED, FAILED, QUEUED, REFUSED
from hub.tenancy.access import region_cipher
from hub.tenancy.keys import KeyDestroyed, RegionCipher, Unreadable
from hub.tenancy.registry import list_regions

log = logging.getLogger(__name__)

#: How long before a destination whose claim came back empty is asked again.
RECLAIM_S = 0.2
#: Longest time a finished call's result waits to be written with others.
FLUSH_S = 0.5
#: Results written in one transaction at most.
FLUSH_ROWS = 500
#: Time the coordinator spends on claims before it dispatches again.
CLAIM_BUDGET_S = 0.05
#: Capped destinations claim this many seconds of calls at a time.
CLAIM_HORIZON_S = 5.0
#: Threads making HTTP calls (shared by all destinations; each keeps its own connections).
CALL_THREADS = 32
#: A claim must hold this much longer than a call's deadline when the call starts.
LEASE_MARGIN_S = 30.0
#: How often the claims of records waiting their turn are looked at (and renewed if need be).
RENEW_EVERY_S = 5.0


class RateLimiter:
    """At most ``rate`` permits per second on a fixed schedule; ``rate`` 0 means no cap.

    Permit *k* is never given before ``start + k / rate``: each caller reserves the next slot of
    the schedule under a lock and sleeps until it, so several threads share one cap. A caller
    that comes late by less than ``tolerance`` seconds (a thread woken late on a busy machine, a
    database write in between) keeps the schedule, so such delays do not lower the rate; after a
    longer pause the schedule restarts from now, so idling never buys a burst. Over any window
    of ``w`` seconds at most ``(w + tolerance) * rate + 1`` permits are given.
    """

    def __init__(
        self,
        rate: float,
        *,
        tolerance: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._tolerance = max(tolerance, self._interval)
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Reserve the next slot; return how many seconds to wait for it."""
        if self._interval == 0.0:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = now if now - self._next > self._tolerance else self._next
            self._next = slot + self._interval
            return max(slot - now, 0.0)

    def try_acquire(self) -> float:
        """Take a permit if its slot has come and return 0.0; else take nothing and return the
        seconds until the next slot.
        """
        if self._interval == 0.0:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = now if now - self._next > self._tolerance else self._next
            if slot > now:
                return slot - now
            self._next = slot + self._interval
            return 0.0

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for a slot; False if ``stop`` was set while waiting."""
        delay = self.reserve()
        if delay <= 0:
            return not (stop is not None and stop.is_set())
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)


@dataclass
class SendStats:
    """What senders did: calls made and the states records reached."""

    calls: int = 0
    delivered: int = 0
    refused: int = 0
    failed: int = 0
    retried: int = 0
    by_code: dict[str, int] = field(default_factory=dict)

    def add(self, transitions: list[Transition], calls: int) -> None:
        """Count recorded transitions."""
        self.calls += calls
        for t in transitions:
            if t.state == DELIVERED:
                self.delivered += 1
            elif t.state == REFUSED:
                self.refused += 1
            elif t.state == FAILED:
                self.failed += 1
            elif t.state == QUEUED:
                self.retried += 1
            self.by_code[t.code] = self.by_code.get(t.code, 0) + 1

    def minus(self, before: SendStats) -> SendStats:
        """The difference to an earlier snapshot."""
        codes = {k: v - before.by_code.get(k, 0) for k, v in self.by_code.items()}
        return SendStats(
            self.calls - before.calls,
            self.delivered - before.delivered,
            self.refused - before.refused,
            self.failed - before.failed,
            self.retried - before.retried,
            {k: v for k, v in codes.items() if v},
        )

    def copy(self) -> SendStats:
        """A snapshot."""
        return SendStats(
            self.calls, self.delivered, self.refused, self.failed, self.retried, dict(self.by_code)
        )


def default_worker_id() -> str:
    """Host, process and a random part: unique per Dispatcher, readable in the attempt log."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Dispatcher:
    """Runs the senders of one worker process (see the module docstring)."""

    def __init__(
        self,
        hub: Hub,
        settings: ConsumerSettings | None = None,
        *,
        worker_id: str | None = None,
        client: NtjpClient | None = None,
        call_threads: int = CALL_THREADS,
    ) -> None:
        self.hub = hub
        self.settings = settings or load_consumer_settings(environment=hub.settings.env)
        self.worker_id = worker_id or default_worker_id()
        self.client = client or NtjpClient(self.settings)
        self._stop = threading.Event()
        self._stats_lock = threading.Lock()
        self._stats = SendStats()
        # One coordinator at a time: the background thread, or run_once in a caller's thread.
        self._run_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._calls = ThreadPoolExecutor(max_workers=call_threads, thread_name_prefix="ntjp-call")
        # Finished calls: the claim, the result, when it started, whether a call went out.
        self._results: queue.SimpleQueue[tuple[Claimed, CallResult, datetime, bool]] = (
            queue.SimpleQueue()
        )
        # Coordinator state (touched by the coordinator thread only).
        self._limiters: dict[str, RateLimiter] = {}
        self._pending: dict[str, deque[Claimed]] = {}
        self._inflight: dict[str, int] = {}
        self._empty_at: dict[str, float] = {}
        self._rotation: dict[str, int] = {}
        # (region, destination) pairs that may have due records: no claim query for the others.
        self._work: set[tuple[str, str]] = set()
        self._ciphers: dict[str, RegionCipher] = {}
        self._done: list[Attempt] = []
        self._oldest_done = 0.0
        self._renewed_at = -math.inf

    # -- public ----------------------------------------------------------------------------------

    def member_lans(self) -> list[str]:
        """Regions whose outboxes are sent: members with an active agreement today."""
        today = swedish_today()
        with self.hub.db.hub.connect() as connection:
            return [r.lan_code for r in list_regions(connection) if r.is_active(today)]

    def tick(self) -> bool:
        """Make sure the coordinator runs in the background (the scheduler's job); True if
        it had to be started.
        """
        if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
            return False
        self._thread = threading.Thread(
            target=self._background, name="outbox-dispatcher", daemon=True
        )
        self._thread.start()
        return True

    @property
    def stats(self) -> SendStats:
        """Totals since this dispatcher was made."""
        with self._stats_lock:
            return self._stats.copy()

    def run_once(self) -> SendStats:
        """Send everything due now, in the calling thread; return what happened."""
        before = self.stats
        with self._run_lock:
            self._loop(until_idle=True)
        return self.stats.minus(before)

    def drain(self, timeout: float = 60.0, *, receipts: bool = True) -> SendStats:
        """Send until every record of every member region is final (waiting out resend pauses),
        then write the receipts (unless ``receipts`` is False); give up after ``timeout`` seconds.
        Return what happened.
        """
        before = self.stats
        deadline = time.monotonic() + timeout
        while True:
            self.run_once()
            lans = self.member_lans()
            if pending_count(self.hub, lans) == 0 or time.monotonic() >= deadline:
                break
            due = [t for t in (next_due_at(self.hub, lan) for lan in lans) if t is not None]
            wait_s = (min(due) - utcnow()).total_seconds() if due else self.settings.poll_interval_s
            time.sleep(min(max(wait_s, 0.005), max(deadline - time.monotonic(), 0.0), 5.0))
        if receipts:
            write_receipts(self.hub, Backoff())
        return self.stats.minus(before)

    def close(self) -> None:
        """Stop within seconds: calls in flight are cut short and recorded as ``INTERRUPTED``
        (an attempt like any other: the producer may have seen it); records claimed but not yet
        called are given back at once, their attempt not counted.
        """
        self._stop.set()
        self.client.interrupt()
        thread = self._thread
        if thread is not None:
            thread.join()
        self._calls.shutdown(wait=True)
        with self._run_lock:
            self._collect(block_s=0.0)
            self._flush()
            self._give_back(lambda _item: True, "the worker stops")
        self.client.close()

    # -- the coordinator ----------------------------------------------------------------------

    def _background(self) -> None:
        with self._run_lock:
            while not self._stop.is_set():
                try:
                    self._loop(until_idle=False)
                except Exception:
                    # Never let one bad moment (a database restart) end the senders for good.
                    log.exception("outbox dispatcher: error; starting again in a moment")
                    self._stop.wait(self.settings.poll_interval_s)

    def _policy(self, to_lan: str) -> DestinationPolicy:
        return self.settings.policy(to_lan)

    def _limiter(self, to_lan: str) -> RateLimiter:
        # Kept for the dispatcher's life: a destination that comes back does not start with a burst.
        rate = self._policy(to_lan).rate_per_s
        limiter = self._limiters.get(to_lan)
        if limiter is None or limiter.rate != rate:
            limiter = RateLimiter(rate)
            self._limiters[to_lan] = limiter
        return limiter

    def _cipher(self, lan: str) -> RegionCipher:
        cipher = self._ciphers.get(lan)
        if cipher is None:
            cipher = region_cipher(self.hub, lan)
            self._ciphers[lan] = cipher
        return cipher

    def _batch(self, policy: DestinationPolicy) -> int:
        if policy.rate_per_s > 0:
            # A few seconds' worth at the cap: fewer claims, while a region's new records still
            # join the turn-taking within seconds.
            return max(policy.concurrency, min(500, math.ceil(policy.rate_per_s * CLAIM_HORIZON_S)))
        return max(policy.concurrency, self.settings.claim_batch)

    def _lease(self, policy: DestinationPolicy, batch: int) -> timedelta:
        # Longer than a call's deadline (with a margin) in any case: renewals keep it so.
        waiting = batch / policy.rate_per_s if policy.rate_per_s > 0 else 0.0
        return timedelta(seconds=2 * waiting + 2 * policy.deadline_s + LEASE_MARGIN_S)

    def _renew(self, items: list[Claimed], policy: DestinationPolicy) -> list[Claimed]:
        """Renew the claims of ``items`` to a full lease; return those still ours."""
        lease = self._lease(policy, self._batch(policy))
        by_lan: dict[str, list[Claimed]] = {}
        for item in items:
            by_lan.setdefault(item.lan, []).append(item)
        kept: list[Claimed] = []
        for lan_items in by_lan.values():
            kept.extend(renew(self.hub, lan_items, lease))
        if len(kept) < len(items):
            lost = len(items) - len(kept)
            log.warning("%d claimed record(s) were taken over by another sender", lost)
        return kept

    def _short_of(self, item: Claimed, policy: DestinationPolicy, ahead_s: float) -> bool:
        """Whether the claim ends within a call's deadline, margin and ``ahead_s`` from now."""
        if item.claimed_until is None:
            return False
        left = (item.claimed_until - utcnow()).total_seconds()
        return left < policy.deadline_s + LEASE_MARGIN_S + ahead_s

    def _keep_claims(self) -> None:
        """Renew the claims of records waiting their turn before they could run out.

        A record waiting here behind slow calls must never look abandoned: a claim (this
        sender's next one, or another worker's) would take it, count another attempt, and this
        sender's result would be thrown away as no longer its own.
        """
        now = time.monotonic()
        if now - self._renewed_at < RENEW_EVERY_S:
            return
        self._renewed_at = now
        for to_lan, pending in self._pending.items():
            policy = self._policy(to_lan)
            short = [c for c in pending if self._short_of(c, policy, 2 * RENEW_EVERY_S)]
            if not short:
                continue
            kept = {c.id: c for c in self._renew(short, policy)}
            lost = {c.id for c in short} - set(kept)
            self._pending[to_lan] = deque(kept.get(c.id, c) for c in pending if c.id not in lost)

    def _give_back(self, gone: Callable[[Claimed], bool], why: str) -> None:
        """Give back the claimed, not yet called records for which ``gone`` holds."""
        back: dict[str, list[Claimed]] = {}
        for to_lan, pending in self._pending.items():
            keep: deque[Claimed] = deque()
            for item in pending:
                (back.setdefault(item.lan, []) if gone(item) else keep).append(item)
            self._pending[to_lan] = keep
        for lan, items in back.items():
            given = unclaim(self.hub, items)
            log.info("region %s: %d claimed record(s) given back unsent (%s)", lan, given, why)

    def _claim_fair(self, to_lan: str, lans: list[str], want: int) -> list[Claimed]:
        """Up to ``want`` records for ``to_lan``, an equal share from each region, interleaved."""
        lans = [lan for lan in lans if (lan, to_lan) in self._work]
        if not lans or want <= 0:
            return []
        policy = self._policy(to_lan)
        start = self._rotation.get(to_lan, 0) % len(lans)
        self._rotation[to_lan] = start + 1
        order = lans[start:] + lans[:start]
        lease = self._lease(policy, self._batch(policy))
        token = uuid.uuid4().hex
        per_region: dict[str, list[Claimed]] = {lan: [] for lan in order}
        share = max(1, math.ceil(want / len(order)))
        got = 0
        # Second round: what regions with little work left unused goes to those with more.
        for round_ in (1, 2):
            for lan in order:
                if got >= want:
                    break
                if round_ == 2 and len(per_region[lan]) < share:
                    continue  # this region had nothing more
                asked = min(share, want - got)
                try:
                    rows = claim(self.hub, lan, to_lan, asked, token, lease)
                except StoreMissing as exc:
                    log.warning("region %s: outbox not sent: %s", lan, exc)
                    rows = []
                per_region[lan].extend(rows)
                got += len(rows)
                if len(rows) < asked:
                    self._work.discard((lan, to_lan))  # drained; the next scan may bring it back
            if got >= want or got == 0:
                break
            share = want - got
        # Interleave, so the rate cap is shared call by call, not region after region.
        mixed = itertools.zip_longest(*per_region.values())
        return [c for group in mixed for c in group if c is not None]

    def _call(self, item: Claimed, policy: DestinationPolicy) -> None:
        started = utcnow()
        called = False
        try:
            envelope = self._cipher(item.lan).open(item.request_enc, "outbox-request")
            called = True  # counted as an attempt from here on, as it always was
            if not matches_its_approval(envelope, item.decision_sha256, item.to_lan):
                # Never call with content no decision covers; a person must look at this.
                result = CallResult(
                    "config", "NOT-APPROVED", "the request is not the content it was approved on"
                )
            else:
                result = self.client.call(envelope, item.correlation_id, policy)
        except (KeyDestroyed, Unreadable) as exc:
            # Sealed under a key that is gone (destroyed, or replaced by a reinstatement): it
            # can never be sent. Failed now, with the reason, not retried as a mystery.
            result = CallResult("config", "KEY", f"{exc}; the record is never sent")
        except Exception as exc:  # a bug here must not lose the record: it is retried
            log.exception("call for record %s failed unexpectedly", item.id)
            result = CallResult("retry", "INTERNAL", f"internal error ({type(exc).__name__})")
        self._results.put((item, result, started, called))

    def _collect(self, block_s: float) -> None:
        """Take finished calls off the result queue (waiting up to ``block_s`` for the first)."""
        try:
            first = (
                self._results.get(timeout=block_s) if block_s > 0 else self._results.get_nowait()
            )
        except queue.Empty:
            return
        items = [first]
        while True:
            try:
                items.append(self._results.get_nowait())
            except queue.Empty:
                break
        if not self._done:
            self._oldest_done = time.monotonic()
        for item, result, started, called in items:
            self._inflight[item.to_lan] -= 1
            self._done.append(Attempt(item, result, started, called=called))

    def _flush(self) -> None:
        if not self._done:
            return
        by_lan: dict[str, list[Attempt]] = {}
        for item in self._done:
            by_lan.setdefault(item.claimed.lan, []).append(item)
        self._done = []
        for lan, items in by_lan.items():
            transitions = record_attempts(
                self.hub, lan, items, self._policy, self.worker_id, self._cipher(lan)
            )
            with self._stats_lock:
                self._stats.add(transitions, sum(1 for i in items if i.called))

    def _give_up(self, item: Claimed) -> None:
        # A claim that expired after its last allowed attempt: no further call.
        lost = CallResult("retry", "LEASE", "the worker of the last attempt stopped")
        if not self._done:
            self._oldest_done = time.monotonic()
        self._done.append(Attempt(item, lost, utcnow(), called=False))

    def _dispatch(self, active: set[str]) -> float:
        """Hand due calls to the pool within each destination's cap and concurrency; return
        the monotonic time at which the next one may go.
        """
        wake = math.inf
        for to_lan in sorted(active):
            policy = self._policy(to_lan)
            pending = self._pending.setdefault(to_lan, deque())
            inflight = self._inflight.setdefault(to_lan, 0)
            limiter = self._limiter(to_lan)
            while pending and inflight < policy.concurrency and not self._stop.is_set():
                if pending[0].attempt > policy.max_attempts:
                    self._give_up(pending.popleft())
                    continue
                wait_s = limiter.try_acquire()
                if wait_s > 0:
                    wake = min(wake, time.monotonic() + wait_s)
                    break
                item = pending.popleft()
                if self._short_of(item, policy, 0.0):
                    # The call could outlast the claim: renew it first, or leave the record to
                    # the sender that took it over.
                    renewed = self._renew([item], policy)
                    if not renewed:
                        continue
                    item = renewed[0]
                inflight += 1
                self._calls.submit(self._call, item, policy)
            self._inflight[to_lan] = inflight
            if not pending and not inflight and to_lan in self._empty_at:
                active.discard(to_lan)  # nothing due here; a later scan brings it back
        return wake

    def _refill(self, active: set[str], lans: list[str]) -> float:
        """Claim for destinations running low, the lowest first, within a small time budget
        (claims must not hold up the calls of the others); return when to look again.
        """
        now = time.monotonic()
        low = []
        for to_lan in active:
            pending = self._pending.setdefault(to_lan, deque())
            empty_at = self._empty_at.get(to_lan)
            if empty_at is not None and now - empty_at <= RECLAIM_S:
                continue
            if len(pending) <= self._batch(self._policy(to_lan)) // 2:
                low.append((len(pending), to_lan))
        wake = min(
            (at + RECLAIM_S for d, at in self._empty_at.items() if d in active), default=math.inf
        )
        for done, (_, to_lan) in enumerate(sorted(low)):
            if done and time.monotonic() - now > CLAIM_BUDGET_S:
                return now  # more to claim: come back right after the next dispatch
            pending = self._pending[to_lan]
            fresh = self._claim_fair(to_lan, lans, self._batch(self._policy(to_lan)) - len(pending))
            pending.extend(fresh)
            if fresh:
                self._empty_at.pop(to_lan, None)
            else:
                self._empty_at[to_lan] = time.monotonic()
        return wake

    def _loop(self, *, until_idle: bool) -> None:
        """Claim, send within the caps, record; return when idle (``until_idle``) or stopped."""
        lans = self.member_lans()
        active: set[str] = set()
        scanned_at = -math.inf
        while not self._stop.is_set():
            now = time.monotonic()
            if now - scanned_at >= self.settings.poll_interval_s:
                # New work (a record queued, a resend pause ended) shows up here.
                if scanned_at > -math.inf:
                    lans = self.member_lans()
                    # A region ended since the last look sends nothing more, and its key is
                    # looked at again (destroyed elsewhere, or replaced) before the next call.
                    self._give_back(_not_in(frozenset(lans)), "the agreement has ended")
                    self._ciphers.clear()
                for lan in lans:
                    try:
                        due = due_destinations(self.hub, lan)
                    except StoreMissing as exc:  # one region's missing store stops only it
                        log.warning("region %s: outbox not sent: %s", lan, exc)
                        continue
                    self._work.update((lan, to_lan) for to_lan in due)
                    for to_lan in due:
                        self._empty_at.pop(to_lan, None)  # fresh evidence of work: claim now
                    active |= due
                scanned_at = now
            self._keep_claims()
            wake = now + self.settings.poll_interval_s
            wake = min(wake, self._dispatch(active))
            wake = min(wake, self._refill(active, lans))
            wake = min(wake, self._dispatch(active))  # what the claims brought goes out now
            busy = any(self._inflight.values())
            waiting = any(self._pending.get(d) for d in active)
            if until_idle and not active and not busy and not waiting:
                break
            if self._done and (
                len(self._done) >= FLUSH_ROWS
                or time.monotonic() - self._oldest_done >= FLUSH_S
                or not busy
            ):
                self._flush()
            pause = max(0.0, min(wake - time.monotonic(), FLUSH_S))
            if busy:
                self._collect(block_s=pause)
            elif pause and not self._done and self._stop.wait(pause):
                break  # nothing in flight: waited for the limiter or the next look
        self._collect(block_s=0.0)
        # Calls still in flight (we were stopped) are recorded by close().
        if not self._stop.is_set() or not any(self._inflight.values()):
            self._flush()


def _not_in(lans: frozenset[str]) -> Callable[[Claimed], bool]:
    """Whether a claimed record's region is not among ``lans``."""
    return lambda item: item.lan not in lans


def run_senders_once(hub: Hub, settings: ConsumerSettings | None = None) -> SendStats:
    """Send every record due now, once (no waiting for resend pauses); for tests and scripts."""
    dispatcher = Dispatcher(hub, settings)
    try:
        return dispatcher.run_once()
    finally:
        dispatcher.close()


def drain(
    hub: Hub, settings: ConsumerSettings | None = None, *, timeout: float = 60.0
) -> SendStats:
    """Send until every outbox record is final (or ``timeout``), then write receipts."""
    dispatcher = Dispatcher(hub, settings)
    try:
        return dispatcher.drain(timeout)
    finally:
        dispatcher.close()
