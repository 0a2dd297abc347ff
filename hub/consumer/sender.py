"""The senders: one per destination län code, with a rate cap and fair sharing among regions.

A :class:`Dispatcher` lives in the worker process. Its :meth:`~Dispatcher.tick` (an APScheduler
job, every second) looks for destinations with due records and starts one sender task for each
destination that has none running. A sender task:

- claims a few due records for its destination, taking them in turn from every member region's
  outbox (rotating the starting region), so a region with 10,000 queued records cannot starve a
  region with ten: the destination's capacity is shared, not first come first served;
- sends them no faster than the destination's rate cap (evenly spaced calls, no bursts), with a
  few calls in flight so one slow producer does not pull the rate down;
- records each attempt in the sending region's log and moves the record on (rule #22 resend
  policy in :func:`hub.consumer.outbox.record_attempts`);
- stops when nothing is due for its destination; the next tick starts it again.

Tests and the demo call :func:`run_senders_once` or :func:`drain` instead of running a scheduler.
Rate caps hold per worker process; the design runs exactly one scheduler (DESIGN.md, Jobs).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hub.consumer.client import CallResult, NtjpClient
from hub.consumer.outbox import (
    Attempt,
    Claimed,
    Transition,
    claim,
    due_destinations,
    next_due_at,
    pending_count,
    record_attempts,
    region_cipher,
    utcnow,
)
from hub.consumer.receipts import write_receipts
from hub.consumer.settings import ConsumerSettings, DestinationPolicy, load_consumer_settings
from hub.consumer.tables import DELIVERED, FAILED, QUEUED, REFUSED
from hub.context import Hub
from hub.contract.regions import REGIONS
from hub.contract.validate import swedish_today
from hub.tenancy.keys import RegionCipher
from hub.tenancy.registry import list_regions

log = logging.getLogger(__name__)


class RateLimiter:
    """At most ``rate`` permits per second, evenly spaced (capacity one: no bursts after idling).

    Each caller reserves the next free slot under a lock and sleeps until it, so several threads
    share one cap. ``rate`` 0 means no cap.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Reserve the next slot; return how many seconds to wait for it."""
        if self._interval == 0.0:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = max(self._next, now)
            self._next = slot + self._interval
            return slot - now

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
    """Runs the per-destination senders of one worker process (see the module docstring)."""

    def __init__(
        self,
        hub: Hub,
        settings: ConsumerSettings | None = None,
        *,
        worker_id: str | None = None,
        client: NtjpClient | None = None,
    ) -> None:
        self.hub = hub
        self.settings = settings or load_consumer_settings(environment=hub.settings.env)
        self.worker_id = worker_id or default_worker_id()
        self.client = client or NtjpClient(self.settings)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stats = SendStats()
        self._active: dict[str, Future[None]] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._send_pools: dict[str, ThreadPoolExecutor] = {}
        self._rotation: dict[str, int] = {}
        self._ciphers: dict[str, RegionCipher] = {}
        # One task per destination at most: the 21 län codes.
        self._tasks = ThreadPoolExecutor(max_workers=len(REGIONS), thread_name_prefix="sender")

    # -- which regions and destinations -------------------------------------------------------

    def member_lans(self) -> list[str]:
        """Regions whose outboxes are sent: members with an active agreement today."""
        today = swedish_today()
        with self.hub.db.hub.connect() as connection:
            return [r.lan_code for r in list_regions(connection) if r.is_active(today)]

    def tick(self) -> list[str]:
        """Start a sender for each destination with due records and no sender running."""
        if self._stop.is_set():
            return []
        lans = self.member_lans()
        due: set[str] = set()
        for lan in lans:
            due |= due_destinations(self.hub, lan)
        started = []
        with self._lock:
            for to_lan in sorted(due):
                running = self._active.get(to_lan)
                if running is None or running.done():
                    self._active[to_lan] = self._tasks.submit(self._serve_logged, to_lan, lans)
                    started.append(to_lan)
        return started

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running sender tasks; True when all finished."""
        with self._lock:
            futures = list(self._active.values())
        _done, not_done = wait(futures, timeout=timeout)
        return not not_done

    @property
    def stats(self) -> SendStats:
        """Totals since this dispatcher was made."""
        with self._lock:
            return self._stats.copy()

    def run_once(self) -> SendStats:
        """Send everything due now (one tick, waiting for its senders); return what happened."""
        before = self.stats
        self.tick()
        self.wait()
        return self.stats.minus(before)

    def drain(self, timeout: float = 60.0) -> SendStats:
        """Send until every record of every member region is final (waiting out resend pauses),
        then write the receipts; give up after ``timeout`` seconds. Return what happened.
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
        write_receipts(self.hub)
        return self.stats.minus(before)

    def close(self) -> None:
        """Stop sender tasks (records they claimed but did not send are claimed until the lease
        ends, then picked up again) and close connections.
        """
        self._stop.set()
        self._tasks.shutdown(wait=True)
        with self._lock:
            pools = list(self._send_pools.values())
        for pool in pools:
            pool.shutdown(wait=True)
        self.client.close()

    # -- one destination ------------------------------------------------------------------------

    def _limiter(self, to_lan: str, policy: DestinationPolicy) -> RateLimiter:
        # Kept across tasks: a sender restarted by the next tick must not start with a burst.
        with self._lock:
            limiter = self._limiters.get(to_lan)
            if limiter is None or limiter.rate != policy.rate_per_s:
                limiter = RateLimiter(policy.rate_per_s)
                self._limiters[to_lan] = limiter
            return limiter

    def _send_pool(self, to_lan: str, policy: DestinationPolicy) -> ThreadPoolExecutor:
        with self._lock:
            pool = self._send_pools.get(to_lan)
            if pool is None:
                pool = ThreadPoolExecutor(
                    max_workers=policy.concurrency, thread_name_prefix=f"send-{to_lan}"
                )
                self._send_pools[to_lan] = pool
            return pool

    def _cipher(self, lan: str) -> RegionCipher:
        cipher = self._ciphers.get(lan)
        if cipher is None:
            cipher = region_cipher(self.hub, lan)
            self._ciphers[lan] = cipher
        return cipher

    def _batch(self, policy: DestinationPolicy) -> int:
        if policy.rate_per_s > 0:
            # About a second's worth: a claim held longer only delays other workers and regions.
            return max(
                policy.concurrency, min(self.settings.claim_batch, math.ceil(policy.rate_per_s))
            )
        return max(policy.concurrency, self.settings.claim_batch)

    def _lease(self, policy: DestinationPolicy, batch: int) -> timedelta:
        waiting = batch / policy.rate_per_s if policy.rate_per_s > 0 else 0.0
        return timedelta(seconds=waiting + 2 * policy.timeout_ms / 1000 + 30)

    def _claim_fair(
        self, to_lan: str, lans: list[str], want: int, policy: DestinationPolicy
    ) -> list[Claimed]:
        """Up to ``want`` records for ``to_lan``, an equal share from each region, interleaved."""
        if not lans:
            return []
        start = self._rotation.get(to_lan, 0) % len(lans)
        self._rotation[to_lan] = start + 1
        order = lans[start:] + lans[:start]
        lease = self._lease(policy, want)
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
                rows = claim(self.hub, lan, to_lan, min(share, want - got), token, lease)
                per_region[lan].extend(rows)
                got += len(rows)
            if got >= want or got == 0:
                break
            share = want - got
        # Interleave, so the rate cap is shared call by call, not region after region.
        mixed = itertools.zip_longest(*per_region.values())
        return [c for group in mixed for c in group if c is not None]

    def _serve_logged(self, to_lan: str, lans: list[str]) -> None:
        try:
            self._serve(to_lan, lans)
        except Exception:
            # A crashed sender must not take the worker down; its claims expire and are retried.
            log.exception("sender for %s stopped on an error", to_lan)

    def _flush(self, to_lan: str, done: list[Attempt], policy: DestinationPolicy) -> None:
        by_lan: dict[str, list[Attempt]] = {}
        for item in done:
            by_lan.setdefault(item.claimed.lan, []).append(item)
        for lan, items in by_lan.items():
            transitions = record_attempts(
                self.hub, lan, items, policy, self.worker_id, self._cipher(lan)
            )
            with self._lock:
                self._stats.add(transitions, sum(1 for i in items if i.called))

    def _call(self, item: Claimed, policy: DestinationPolicy) -> tuple[CallResult, datetime]:
        started = utcnow()
        envelope = self._cipher(item.lan).open(item.request_enc, "outbox-request")
        return self.client.call(envelope, item.correlation_id, policy), started

    def _serve(self, to_lan: str, lans: list[str]) -> None:
        policy = self.settings.policy(to_lan)
        limiter = self._limiter(to_lan, policy)
        pool = self._send_pool(to_lan, policy)
        batch = self._batch(policy)
        pending: deque[Claimed] = deque()
        inflight: dict[Future[tuple[CallResult, datetime]], Claimed] = {}
        done: list[Attempt] = []
        last_flush = time.monotonic()
        last_claim_empty = False
        while not self._stop.is_set():
            if len(pending) <= batch // 2 and not (last_claim_empty and inflight):
                fresh = self._claim_fair(to_lan, lans, batch - len(pending), policy)
                pending.extend(fresh)
                last_claim_empty = not fresh
            if not pending and not inflight:
                break
            if pending and len(inflight) < policy.concurrency:
                item = pending.popleft()
                if item.attempt > policy.max_attempts:
                    # A claim that expired after its last allowed attempt: give up, do not call.
                    lost = CallResult("retry", "LEASE", "the worker of the last attempt stopped")
                    done.append(Attempt(item, lost, utcnow(), called=False))
                    continue
                if not limiter.acquire(self._stop):
                    pending.appendleft(item)
                    break
                inflight[pool.submit(self._call, item, policy)] = item
            elif inflight:
                # Wake up for a finished call, or now and then to see whether more became due.
                wait(list(inflight), timeout=0.2, return_when=FIRST_COMPLETED)
                if last_claim_empty and not pending:
                    last_claim_empty = False
            for future in [f for f in inflight if f.done()]:
                item = inflight.pop(future)
                result, started = future.result()
                done.append(Attempt(item, result, started))
            now = time.monotonic()
            idle = not (inflight or pending)
            if done and (len(done) >= batch or now - last_flush > 0.25 or idle):
                self._flush(to_lan, done, policy)
                done, last_flush = [], now
        for future in list(inflight):
            item = inflight.pop(future)
            result, started = future.result()
            done.append(Attempt(item, result, started))
        if done:
            self._flush(to_lan, done, policy)
        # Anything claimed but not sent (we were stopped) is picked up again when its lease ends.


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
