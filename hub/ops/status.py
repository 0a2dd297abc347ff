"""``agenthub drops status``: per region, is the drop reachable, and is anything stuck?

For each region: where its drop is (no secrets), reachable or not (probed now unless
``--no-check``; otherwise as last recorded by the worker), the last success, the backlog of
messages waiting for delivery and the age of the oldest, messages that failed for good, and —
when the drop is failing — why, since when, and when the next attempt is due. Below the table,
the workers seen alive recently: a backlog with no worker is the first thing to look at.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from hub.clock import as_utc, utcnow
from hub.context import Hub
from hub.db import StoreMissing
from hub.db.hub_tables import worker_heartbeats
from hub.db.region_tables import messages
from hub.drops.regional import drop_location
from hub.drops.state import all_states
from hub.jobs.config import JobSettings
from hub.jobs.worker import HEARTBEAT_SECONDS, probe
from hub.tenancy.registry import list_regions


@dataclass(frozen=True)
class DropStatus:
    """One region's line in ``drops status``."""

    lan_code: str
    name: str
    location: str
    reachable: bool | None
    last_success_at: datetime | None
    backlog: int
    oldest_pending_at: datetime | None
    failed: int
    last_error: str | None
    error_permanent: bool
    failing_since: datetime | None
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class WorkerSeen:
    """A worker process that sent a heartbeat recently."""

    worker_id: str
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime


def drops_status(hub: Hub, settings: JobSettings, *, check: bool = True) -> list[DropStatus]:
    """The status of every region's drop; ``check`` probes each drop now (and records it)."""
    with hub.db.hub.connect() as connection:
        regions = list_regions(connection)
    if check:
        for region in regions:
            probe(hub, region, settings)
    with hub.db.hub.connect() as connection:
        states = all_states(connection)
    out: list[DropStatus] = []
    for region in regions:
        store_error: str | None = None
        pending: Any
        try:
            with hub.db.region(region.lan_code).connect() as connection:
                pending = connection.execute(
                    select(func.count(), func.min(messages.c.received_at)).where(
                        messages.c.delivery_state == "pending"
                    )
                ).one()
                failed = connection.execute(
                    select(func.count()).where(messages.c.delivery_state == "failed")
                ).scalar_one()
        except StoreMissing as exc:  # said on the region's line, not a traceback for all
            store_error, pending, failed = str(exc), (0, None), 0
        state = states.get(region.lan_code)
        out.append(
            DropStatus(
                lan_code=region.lan_code,
                name=region.name,
                location=drop_location(hub, region),
                reachable=state.reachable if state else None,
                last_success_at=state.last_success_at if state else None,
                backlog=int(pending[0]),
                oldest_pending_at=as_utc(pending[1]),
                failed=int(failed),
                last_error=store_error
                or (state.last_error if state and not state.reachable else None),
                error_permanent=bool(
                    store_error or (state and state.error_permanent and not state.reachable)
                ),
                failing_since=state.failing_since if state else None,
                next_attempt_at=state.next_attempt_at if state and not state.reachable else None,
            )
        )
    return out


def workers_seen(hub: Hub, now: datetime | None = None) -> list[WorkerSeen]:
    """Workers with a heartbeat in the last three heartbeat intervals."""
    now = now or utcnow()
    since = now - timedelta(seconds=3 * HEARTBEAT_SECONDS)
    with hub.db.hub.connect() as connection:
        rows = connection.execute(
            select(worker_heartbeats)
            .where(worker_heartbeats.c.seen_at >= since)
            .order_by(worker_heartbeats.c.started_at)
        ).all()
    return [
        WorkerSeen(
            r.worker_id, r.host, r.pid, as_utc(r.started_at) or now, as_utc(r.seen_at) or now
        )
        for r in rows
    ]


def age(value: datetime | None, now: datetime) -> str:
    """A short human age: ``42s``, ``5m``, ``3h``, ``2d``; ``-`` for never."""
    if value is None:
        return "-"
    seconds = max(0, int((now - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_status(rows: list[DropStatus], workers: list[WorkerSeen], now: datetime) -> str:
    """The operator's table."""
    lines = [
        f"{'län':<4} {'reachable':<10} {'last ok':<8} {'backlog':>7} {'oldest':>7} "
        f"{'failed':>6}  drop"
    ]
    for r in rows:
        reachable = {True: "yes", False: "NO", None: "unknown"}[r.reachable]
        lines.append(
            f"{r.lan_code:<4} {reachable:<10} {age(r.last_success_at, now):<8} {r.backlog:>7} "
            f"{age(r.oldest_pending_at, now):>7} {r.failed:>6}  {r.location}"
        )
        if r.reachable is False and r.last_error:
            kind = "PERMANENT (fix the configuration)" if r.error_permanent else "transient"
            retry = (
                f"; next attempt in {age(now, r.next_attempt_at)}"
                if r.next_attempt_at and r.next_attempt_at > now
                else "; next attempt due now"
            )
            lines.append(
                f"     failing for {age(r.failing_since, now)}, {kind}{retry}: {r.last_error}"
            )
    if workers:
        lines.append("")
        for w in workers:
            lines.append(
                f"worker {w.worker_id} up {age(w.started_at, now)}, seen {age(w.seen_at, now)} ago"
            )
    else:
        lines.append("")
        lines.append("no worker seen recently: nothing is being delivered (start agenthub worker)")
    return "\n".join(lines)


def status_json(rows: list[DropStatus], workers: list[WorkerSeen]) -> dict[str, Any]:
    """The same as JSON (times as ISO 8601 UTC)."""

    def clean(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in item.items()}

    return {
        "regions": [clean(asdict(r)) for r in rows],
        "workers": [clean(asdict(w)) for w in workers],
    }
