"""``agenthub worker``: the one scheduler process, and the list of jobs it runs.

APScheduler 3.x ``BlockingScheduler`` in its own process — never inside a web worker, so
``agenthub serve`` keeps answering NTjP whether or not a worker runs (inbound messages wait,
stored, until one does). Jobs are defined here in code, each with ``coalesce=True`` (a run
missed while the previous one was busy is run once, not n times) and ``max_instances=1``:

==================  ==============================================  ===========================
job id              what                                            every
==================  ==============================================  ===========================
``deliver``         received messages → drops (:mod:`hub.delivery`)  ``AGENTHUB_WORKER_DELIVER_MS``
``pickup``          extracts → archive, for intake                  ``…_PICKUP_SECONDS``
``check``           probe every drop for status                     ``…_CHECK_SECONDS``
``purge``           retention (:mod:`hub.inbound.retention`)        ``…_PURGE_SECONDS``
``heartbeat``       "this worker is alive"                          15 s
``outbox.send``     keep the senders running (:mod:`hub.outbound`)  ``AGENTHUB_SEND_POLL_MS``
``outbox.receipts`` receipts of final and withheld records → drops  twice that
==================  ==============================================  ===========================

Two workers started by mistake do no harm: every job claims its rows (:mod:`hub.db.claims`),
and drops refuse to write a name twice. SIGTERM or SIGINT stops the scheduler after the running
jobs finish; SIGKILL is survived by design (see :mod:`hub.delivery.run`).

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
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import delete, insert, update

from hub.clock import utcnow
from hub.context import Hub
from hub.db import StoreMissing
from hub.db.hub_tables import worker_heartbeats
from hub.delivery.run import DeliveryReport, deliver_all
from hub.drops.session import region_drop
from hub.inbound.retention import purge_region
from hub.intake.pickup import PickupReport, pickup_all
from hub.jobs.config import JobSettings
from hub.outbound.receipts import write_receipts
from hub.outbound.sender import Dispatcher
from hub.outbound.settings import ConsumerSettings, load_consumer_settings
from hub.tenancy.registry import MemberRegion, list_regions

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
    now = utcnow()
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
    return {region.lan_code: probe(hub, region, settings) for region in regions}


def probe(hub: Hub, region: MemberRegion, settings: JobSettings) -> bool | None:
    """Connect to one drop, make sure its layout exists, record and return the result.

    None when the drop is backing off and was left alone.
    """
    with region_drop(hub, region, settings.backoff) as session:
        if session.skipped:
            return None
        session.open()
    return session.error is None


def purge_all(hub: Hub, settings: JobSettings, now: datetime | None = None) -> dict[str, int]:
    """One retention run over every region; also forgets workers not seen for a day."""
    now = now or utcnow()
    with hub.db.hub.begin() as connection:
        regions = list_regions(connection)
        connection.execute(
            delete(worker_heartbeats).where(worker_heartbeats.c.seen_at < now - timedelta(days=1))
        )
    purged: dict[str, int] = {}
    for region in regions:
        try:
            purged[region.lan_code] = purge_region(
                hub, region.lan_code, settings.body_retention_days, now
            )
        except StoreMissing as exc:  # one region's missing store must not hold up the rest
            log.warning("region %s: retention skipped: %s", region.lan_code, exc)
    return purged


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
    scheduler: BaseScheduler,
    hub: Hub,
    settings: JobSettings,
    worker_id: str,
    consumer: ConsumerSettings | None = None,
) -> Dispatcher:
    """Add every job of the worker to ``scheduler``; return the senders' dispatcher.

    The dispatcher's threads are stopped when the scheduler shuts down.
    """
    started = utcnow()
    now = utcnow()
    common: dict[str, Any] = {"coalesce": True, "max_instances": 1, "replace_existing": True}

    def every(name: str, fn: Callable[[], object], seconds: float, *, at_once: bool) -> None:
        # APScheduler reads an explicit next_run_time=None as "paused": leave it out instead.
        first: dict[str, Any] = {"next_run_time": now} if at_once else {}
        scheduler.add_job(
            _guarded(name, fn),
            "interval",
            seconds=seconds,
            id=name,
            name=JOB_NAMES[name],
            **first,
            **common,
        )

    deliver_s = settings.deliver_every_ms / 1000
    every("deliver", lambda: deliver_all(hub, settings, worker_id), deliver_s, at_once=True)
    every(
        "pickup",
        lambda: pickup_all(hub, settings, worker_id),
        settings.pickup_every_s,
        at_once=True,
    )
    every("check", lambda: check_drops(hub, settings), settings.check_every_s, at_once=False)
    every("purge", lambda: purge_all(hub, settings), settings.purge_every_s, at_once=True)
    every("heartbeat", lambda: heartbeat(hub, worker_id, started), HEARTBEAT_SECONDS, at_once=True)
    consumer = consumer or load_consumer_settings(environment=hub.settings.env)
    dispatcher = Dispatcher(hub, consumer)
    # A tick only makes sure the dispatcher's coordinator thread runs (and restarts it if it
    # died), so it is cheap and never holds a scheduler thread.
    every("outbox.send", dispatcher.tick, consumer.poll_interval_s, at_once=False)
    every(
        "outbox.receipts",
        lambda: write_receipts(hub, settings.backoff),
        max(2 * consumer.poll_interval_s, 1.0),
        at_once=False,
    )

    def _closed(_event: Any) -> None:
        dispatcher.close()

    scheduler.add_listener(_closed, EVENT_SCHEDULER_SHUTDOWN)
    return dispatcher


JOB_NAMES = {
    "deliver": "deliver received messages to region drops",
    "pickup": "pick up extracts from region drops",
    "check": "probe every region drop",
    "purge": "purge what retention allows",
    "heartbeat": "worker heartbeat",
    "outbox.send": "send due outbox records through NTjP",
    "outbox.receipts": "write receipts of final outbox records and withheld review records",
}


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
