"""Deliver stored inbound messages to their region's ``received/`` folder, exactly once.

One run, per region: skip the region while its drop is backing off (:mod:`hub.drops.session`);
otherwise open the drop once, then repeatedly claim a batch of pending messages
(:func:`hub.db.claims.claim`), write each message's XML file and then its JSON sidecar
(:mod:`hub.delivery.files`), and mark the batch delivered in one transaction together with one
access-log line per message.

Why nothing is lost or doubled:

* a message is marked delivered only after both its files are in the drop (written, fsynced and
  renamed into place), so a crash at any point leaves it pending and a later run delivers it;
* the file names are a function of the message, and the drop never writes a name that exists, so
  the later run finds files it already wrote and counts them as delivered instead of writing them
  twice;
* two workers claim disjoint batches, so they do not even try the same message.

The one case the hub cannot prevent: the region moves a file away between the hub writing it and
the hub recording the delivery, and the hub then crashes. The next run writes the file again; the
region sees the same message id twice (``docs/drops.md`` explains the rule for importers).

Failures: a drop error (unreachable, authentication, disk) ends the region's run, gives the
unfinished claims back and records the failure, which sets the backoff. A message that cannot be
rendered (a corrupt body) is retried with its own backoff and marked ``failed`` after
``max_attempts``; one sealed under a destroyed key (the region since reinstated with a new one)
can never be opened and is marked ``failed`` at once, saying so. Neither blocks the messages
behind it. A region whose key is destroyed is skipped with that reason; an ended region whose
key is kept still gets what the hub received for it before the end.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Engine,
    Row,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)

from hub.audit import AccessEntry, Action, record_access_many
from hub.clock import utcnow
from hub.context import Hub
from hub.contract.personnummer import mask_text
from hub.db import StoreMissing
from hub.db.claims import claim, release
from hub.db.region_tables import messages
from hub.delivery.files import MessageMeta, ReceivedFiles, render_received
from hub.drops.base import RECEIVED, Drop, DropError
from hub.drops.session import region_drop
from hub.drops.state import backoff_delay
from hub.jobs.config import JobSettings
from hub.tenancy.access import region_cipher, system_actor
from hub.tenancy.keys import KeyDestroyed, RegionCipher, Unreadable
from hub.tenancy.registry import MemberRegion, list_regions

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    """What one run did for one region (counts and ids only, no personal data)."""

    lan_code: str
    written: int = 0
    already_there: int = 0
    failed: int = 0
    skipped: str | None = None
    drop_error: str | None = None
    claimed: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        """Messages marked delivered in this run."""
        return self.written + self.already_there


def _ready(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    return and_(
        messages.c.delivery_state == "pending",
        or_(messages.c.next_attempt_at.is_(None), messages.c.next_attempt_at <= now),
    )


def has_ready(engine: Engine, now: datetime | None = None) -> bool:
    """Whether a region has a message waiting for delivery now (cheap; no drop is touched)."""
    now = now or utcnow()
    with engine.connect() as connection:
        first = connection.execute(select(messages.c.id).where(_ready(now)).limit(1)).first()
    return first is not None


def _meta(row: Row[Any]) -> MessageMeta:
    return MessageMeta(
        id=row.id,
        received_at=row.received_at,
        logical_address=row.logical_address,
        kind=row.kind,
        result_code=row.result_code,
        result_text=row.result_text,
        sender_hsaid=row.sender_hsaid,
        original_consumer_hsaid=row.original_consumer_hsaid,
        correlation_id=row.correlation_id,
    )


def render(cipher: RegionCipher, row: Row[Any]) -> ReceivedFiles:
    """The files of one claimed message (decrypts its body with the region's key)."""
    if row.body_enc is None:
        raise ValueError("the body was purged before delivery")
    return render_received(cipher.open(row.body_enc, "body"), _meta(row))


@dataclass
class _Batch:
    done: list[tuple[str, str, bool]] = field(default_factory=list)  # id, xml name, newly written
    # row, error text, permanent (no later attempt can do better: fail it now)
    failed: list[tuple[Row[Any], str, bool]] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)
    drop_error: DropError | None = None


def _write_lane(drop: Drop, cipher: RegionCipher, rows: list[Row[Any]]) -> _Batch:
    batch = _Batch()
    for index, row in enumerate(rows):
        try:
            files = render(cipher, row)
        except Unreadable as exc:
            # Sealed under the region's destroyed key (replaced since): no later attempt can
            # open it. Anything else may be a passing fault, and is retried.
            batch.failed.append((row, str(exc), cipher.sealed_before(row.received_at)))
            continue
        except Exception as exc:  # one bad message must not hold up the others
            batch.failed.append((row, f"{type(exc).__name__}: {exc}", False))
            continue
        try:
            # XML first: whoever sees the sidecar can rely on the XML file being complete.
            wrote_xml = drop.write_atomic(RECEIVED, files.xml_name, files.xml)
            wrote_json = drop.write_atomic(RECEIVED, files.json_name, files.json)
        except DropError as exc:
            batch.drop_error = exc
            batch.untouched = [r.id for r in rows[index:]]
            break
        batch.done.append((row.id, files.xml_name, wrote_xml or wrote_json))
    return batch


def _write_batch(
    drops: list[Drop], cipher: RegionCipher, rows: list[Row[Any]], pool: ThreadPoolExecutor | None
) -> _Batch:
    """Write a claimed batch over one or more lanes (each lane its own drop connection).

    Several lanes overlap one file's fsync or SFTP round trip with the next file's rendering and
    writing; on a single lane the batch is written in order.
    """
    if pool is None or len(drops) == 1 or len(rows) < 2 * len(drops):
        return _write_lane(drops[0], cipher, rows)
    lanes = len(drops)
    chunks = [rows[i::lanes] for i in range(lanes)]
    merged = _Batch()
    lane_args = zip(drops, chunks, strict=True)
    for result in pool.map(lambda pair: _write_lane(pair[0], cipher, pair[1]), lane_args):
        merged.done.extend(result.done)
        merged.failed.extend(result.failed)
        merged.untouched.extend(result.untouched)
        merged.drop_error = merged.drop_error or result.drop_error
    return merged


def _record(
    engine: Engine, batch: _Batch, worker_id: str, settings: JobSettings, now: datetime
) -> None:
    with engine.begin() as connection:
        if batch.done:
            connection.execute(
                update(messages)
                .where(
                    messages.c.id == bindparam("b_id"),
                    messages.c.delivery_state == "pending",
                )
                .values(
                    delivery_state="delivered",
                    delivered_at=now,
                    delivered_name=bindparam("b_name"),
                    delivery_attempts=messages.c.delivery_attempts + 1,
                    delivery_error=None,
                    next_attempt_at=None,
                    claimed_until=None,
                ),
                [{"b_id": mid, "b_name": name} for mid, name, _ in batch.done],
            )
            record_access_many(
                connection,
                system_actor(f"worker:{worker_id}"),
                [
                    AccessEntry(
                        Action.MESSAGE_DELIVERED,
                        mid,
                        f"{RECEIVED}/{name}" + ("" if new else " (already there)"),
                        at=now,
                    )
                    for mid, name, new in batch.done
                ],
            )
        for row, error, permanent in batch.failed:
            attempts = (row.delivery_attempts or 0) + 1
            final = permanent or attempts >= settings.max_attempts
            wait = backoff_delay(
                attempts,
                base_s=settings.backoff_base_s,
                cap_s=settings.backoff_cap_s,
                permanent=False,
            )
            connection.execute(
                update(messages)
                .where(messages.c.id == row.id, messages.c.delivery_state == "pending")
                .values(
                    delivery_state="failed" if final else "pending",
                    delivery_attempts=attempts,
                    delivery_error=mask_text(error)[:500],
                    next_attempt_at=None if final else now + wait,
                    claimed_until=None,
                )
            )


def lanes_for(region: MemberRegion, settings: JobSettings) -> int:
    """How many drop connections a region's delivery uses (``drop_settings.connections``)."""
    value = region.drop_settings.get("connections", settings.lanes)
    try:
        return max(1, min(int(value), 16))
    except (TypeError, ValueError):
        return settings.lanes


def deliver_region(
    hub: Hub,
    region: MemberRegion,
    settings: JobSettings,
    worker_id: str,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> DeliveryReport:
    """Deliver what is pending for one region, until done or the run budget is spent."""
    lan = region.lan_code
    report = DeliveryReport(lan)
    now = clock()
    with region_drop(hub, region, settings.backoff, now) as session:
        if session.skipped:
            report.skipped = session.skipped
            return report
        try:
            cipher = region_cipher(hub, lan)  # looked at each run: destroyed elsewhere counts
        except KeyDestroyed:
            report.skipped = "the region's key is destroyed"
            return report
        engine = hub.db.region(lan)
        if not has_ready(engine, now):
            return report
        lanes = lanes_for(region, settings)
        deadline = time.monotonic() + settings.run_budget_s
        drops = [session.open() for _ in range(lanes)]
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(ThreadPoolExecutor(lanes)) if lanes > 1 else None
            while time.monotonic() < deadline:
                rows = claim(
                    engine,
                    messages,
                    worker_id,
                    ready=_ready,
                    order_by=[messages.c.received_at],
                    limit=settings.batch_size,
                    lease=settings.lease,
                    now=clock(),
                )
                if not rows:
                    break
                report.claimed.extend(row.id for row in rows)
                batch = _write_batch(drops, cipher, rows, pool)
                _record(engine, batch, worker_id, settings, clock())
                report.written += sum(1 for _, _, new in batch.done if new)
                report.already_there += sum(1 for _, _, new in batch.done if not new)
                report.failed += len(batch.failed)
                if batch.drop_error is not None:
                    release(engine, messages, batch.untouched, worker_id)
                    session.fail(batch.drop_error)
                    break
                if len(rows) < settings.batch_size:
                    break
    if session.error is not None:
        report.drop_error = str(session.error)
        return report
    if report.delivered or report.failed:
        log.info(
            "region %s: delivered %d (%d already there), %d failed",
            lan,
            report.delivered,
            report.already_there,
            report.failed,
        )
    return report


def deliver_all(
    hub: Hub, settings: JobSettings, worker_id: str, *, parallel: int = 4
) -> list[DeliveryReport]:
    """One delivery run over every registered region (a few regions at a time).

    Regions are independent, so one slow or unreachable SFTP server does not hold up the
    others for longer than its connect timeout.
    """
    with hub.db.hub.connect() as connection:
        regions = list_regions(connection)
    if not regions:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(regions)))) as pool:
        return list(pool.map(lambda r: _safe(hub, r, settings, worker_id), regions))


def _safe(hub: Hub, region: MemberRegion, settings: JobSettings, worker_id: str) -> DeliveryReport:
    # A bug or a database hiccup in one region must not end the run for the others.
    try:
        return deliver_region(hub, region, settings, worker_id)
    except StoreMissing as exc:
        log.warning("region %s: delivery skipped: %s", region.lan_code, exc)
        report = DeliveryReport(region.lan_code)
        report.skipped = str(exc)
        return report
    except Exception:
        log.exception("region %s: delivery run failed", region.lan_code)
        report = DeliveryReport(region.lan_code)
        report.skipped = "internal error (see log)"
        return report


def pending_counts(hub: Hub, lan_codes: Iterable[str]) -> dict[str, int]:
    """Messages waiting for delivery per region (for status and tests)."""
    out: dict[str, int] = {}
    for lan in lan_codes:
        with hub.db.region(lan).connect() as connection:
            out[lan] = int(
                connection.execute(
                    select(func.count())
                    .select_from(messages)
                    .where(messages.c.delivery_state == "pending")
                ).scalar_one()
            )
    return out
