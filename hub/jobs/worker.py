"""``agenthub worker``: the one scheduler process that moves work between the hub and drops.

APScheduler 3.x ``BlockingScheduler`` in its own process — never inside a web worker, so
``agenthub serve`` keeps answering NTjP whether or not a worker runs (inbound messages wait,
stored, until one does). Jobs are defined here in code, each with ``coalesce=True`` (a run
missed while the previous one was busy is run once, not n times) and ``max_instances=1``:

=============  ===============================  =============================================
job id         what                             every
=============  ===============================  =============================================
``deliver``    received messages → drops        ``AGENTHUB_WORKER_DELIVER_MS`` (2 s)
``pickup``     extracts → archive, for intake   ``AGENTHUB_WORKER_PICKUP_SECONDS`` (15 s)
``check``      probe every drop for status      ``AGENTHUB_WORKER_CHECK_SECONDS`` (60 s)
``purge``      retention (:mod:`.retention`)    ``AGENTHUB_WORKER_PURGE_SECONDS`` (1 h)
``heartbeat``  "this worker is alive"           15 s
=============  ===============================  =============================================

plus whatever :func:`hub.consumer.jobs.register_jobs` adds (senders, receipts).

Two workers started by mistake do no harm: every job claims its rows (:mod:`hub.jobs.claims`),
and drops refuse to write a name twice. SIGTERM or SIGINT stops the scheduler after the running
jobs finish; SIGKILL is survived by design (see :mod:`hub.jobs.delivery`).

Of several workers exactly one leads: the others stand by and take over when it dies
(:mod:`hub.jobs.leader`).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import insert, update

from hub.context import Hub
from hub.drops.base import DropError
from hub.drops.regional import drop_config_hash, drop_for_region, prepare_drop
from hub.drops.state import get_state, record_failure, record_success, state_allows
from hub.jobs.config import JobSettings
from hub.jobs.delivery import DeliveryReport, deliver_all
from hub.jobs.extracts import PickupReport, pickup_all
from hub.jobs.retention import purge_all
from hub.jobs.tables import worker_heartbeats
from hub.tenancy.registry import Region, list_regions

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15


class _SkipBusyRuns(logging.Filter):
    """Drop "skipped: maximum number of running instances reached": that is max_instances=1
    doing its job while a long delivery run is busy, not news for an operator."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


def new_worker_id() -> str:
    """``host:pid:random``: unique per process, and says where a claim came from."""
    host = socket.gethostname()[:40]
    return f"{host}:{os.getpid()}:{secrets.token_hex(3)}"


def heartbeat(hub: Hub, worker_id: str, started_at: datetime) -> None:
    """Record that this worker is alive (``drops status`` shows it)."""
    now = datetime.now(UTC)
    with hub.db.hub.begin() as connection:
        changed = connection.execute(
            update(worker_heartbeats)
            .where(worker_heartbeats.c.worker_id == worker_id)
            .values(seen_at=now)
        ).rowcount
        if not changed:
            connection.execute(
                insert(worker_heartbeats).values(
                    worker_id=worker_id,
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                    started_at=started_at,
                    seen_at=now,
                )
            )


def check_drops(hub: Hub, settings: JobSettings) -> dict[str, bool | None]:
    """Probe each region's drop (unless it is backing off) and record the outcome.

    Returns län code → reachable (None where the probe was skipped because of the backoff).
    """
    with hub.db.hub.connect() as connection:
        regions = list_regions(connection)
        states = {r.lan_code: get_state(connection, r.lan_code) for r in regions}
    outcome: dict[str, bool | None] = {}
    now = datetime.now(UTC)
    for region in regions:
        config_hash = drop_config_hash(region)
        if not state_allows(states[region.lan_code], config_hash, now):
            outcome[region.lan_code] = None
            continue
        outcome[region.lan_code] = probe(hub, region, settings)
    return outcome


def probe(hub: Hub, region: Region, settings: JobSettings) -> bool:
    """Connect to one drop, make sure its layout exists, record and return the result."""
    config_hash = drop_config_hash(region)
    try:
        with drop_for_region(hub, region) as drop:
            prepare_drop(drop)
    except DropError as exc:
        record_failure(
            hub.db.hub,
            region.lan_code,
            exc,
            config_hash,
            base_s=settings.backoff_base_s,
            cap_s=settings.backoff_cap_s,
        )
        return False
    record_success(hub.db.hub, region.lan_code, config_hash)
    return True


def _guarded(name: str, fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        # APScheduler logs a failing job too, but with our wording and the job's name.
        try:
            fn()
        except Exception:
            log.exception("job %s failed", name)

    run.__name__ = f"job_{name}"
    return run


def add_jobs(
    scheduler: BaseScheduler, hub: Hub, settings: JobSettings, worker_id: str
) -> BaseScheduler:
    """Add this side's jobs and the consumer side's (:func:`hub.consumer.jobs.register_jobs`)."""
    started = datetime.now(UTC)
    now = datetime.now(UTC)
    common: dict[str, Any] = {"coalesce": True, "max_instances": 1, "replace_existing": True}
    scheduler.add_job(
        _guarded("deliver", lambda: deliver_all(hub, settings, worker_id)),
        "interval",
        seconds=settings.deliver_every_ms / 1000,
        id="deliver",
        name="deliver received messages to region drops",
        next_run_time=now,
        **common,
    )
    scheduler.add_job(
        _guarded("pickup", lambda: pickup_all(hub, settings, worker_id)),
        "interval",
        seconds=settings.pickup_every_s,
        id="pickup",
        name="pick up extracts from region drops",
        next_run_time=now,
        **common,
    )
    scheduler.add_job(
        _guarded("check", lambda: check_drops(hub, settings)),
        "interval",
        seconds=settings.check_every_s,
        id="check",
        name="probe every region drop",
        **common,
    )
    scheduler.add_job(
        _guarded("purge", lambda: purge_all(hub, settings)),
        "interval",
        seconds=settings.purge_every_s,
        id="purge",
        name="purge what retention allows",
        next_run_time=now,
        **common,
    )
    scheduler.add_job(
        _guarded("heartbeat", lambda: heartbeat(hub, worker_id, started)),
        "interval",
        seconds=HEARTBEAT_SECONDS,
        id="heartbeat",
        name="worker heartbeat",
        next_run_time=now,
        **common,
    )
    from hub.consumer.jobs import register_jobs

    register_jobs(scheduler, hub)
    return scheduler


def build_scheduler(hub: Hub, settings: JobSettings, worker_id: str) -> BlockingScheduler:
    """A BlockingScheduler with every job added (not started)."""
    scheduler = BlockingScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
    )
    add_jobs(scheduler, hub, settings, worker_id)
    return scheduler


@dataclass(frozen=True)
class OnceReport:
    """What :func:`run_once` did."""

    check: dict[str, bool | None]
    pickup: list[PickupReport]
    deliver: list[DeliveryReport]
    purge: dict[str, int]


def run_once(hub: Hub, settings: JobSettings, worker_id: str | None = None) -> OnceReport:
    """Run each of this side's jobs once, in order, in this thread (``agenthub worker --once``)."""
    # No heartbeat: a one-off run is not a worker that status may count on.
    worker_id = worker_id or new_worker_id()
    return OnceReport(
        check=check_drops(hub, settings),
        pickup=pickup_all(hub, settings, worker_id),
        deliver=deliver_all(hub, settings, worker_id),
        purge=purge_all(hub, settings),
    )


def run_worker(hub: Hub, settings: JobSettings) -> None:
    """Run the scheduler until SIGTERM/SIGINT."""
    worker_id = new_worker_id()
    scheduler = build_scheduler(hub, settings, worker_id)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("worker %s: signal %d, stopping after running jobs", worker_id, signum)
        if scheduler.running:  # a second signal must not raise out of the handler
            scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if log.getEffectiveLevel() > logging.DEBUG:
        # APScheduler logs every run of every job at INFO: seconds apart, that drowns the log.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        logging.getLogger("apscheduler.scheduler").addFilter(_SkipBusyRuns())
    log.info("worker %s starting", worker_id)
    # Every worker runs the scheduler; only the one holding the lead does the jobs' work.
    from hub.jobs.leader import lead_scheduler

    elector = lead_scheduler(hub, scheduler, worker_id)
    try:
        scheduler.start()
    finally:
        elector.stop()
    log.info("worker %s stopped", worker_id)
