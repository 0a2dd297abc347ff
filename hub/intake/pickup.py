"""Pick up extract files a region put in ``extracts/``: claim, checksum, archive, record.

What intake gets: one row per picked-up file in the region's ``extracts`` table with state
``archived``, the file in ``extracts/.archive/<archived_name>`` and the SHA-256 and size of
exactly the bytes archived. Nothing here parses an extract.

Order of steps, and why:

1. read the file and hash it;
2. insert the row (state ``claimed``, with a lease) — its unique *sighting key* (name, size,
   mtime, checksum) lets only one of two racing workers go on;
3. move the file into the archive under a fresh name (``<UTC time>_<row id prefix>_<name>``);
4. hash the archived copy again and mark the row ``archived`` with that checksum — the region
   may have replaced the file between 1 and 3, and the row must describe what was archived.

A crash after 2 leaves a ``claimed`` row whose lease runs out; the next run finishes it: the
file is in the archive (mark it archived), still in ``extracts/`` (move it), or gone (the region
took it back: ``vanished``). No file is lost and none is recorded twice.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.audit import Action, record_access
from hub.clock import utcnow
from hub.context import Hub
from hub.db import StoreMissing
from hub.db.region_tables import extracts
from hub.drops.base import (
    ARCHIVE,
    EXTRACTS,
    MAX_NAME_BYTES,
    Drop,
    DropFile,
    DropFileNotFound,
)
from hub.drops.session import region_drop
from hub.jobs.config import JobSettings
from hub.tenancy.access import system_actor
from hub.tenancy.registry import MemberRegion, list_regions

log = logging.getLogger(__name__)


@dataclass
class PickupReport:
    """What one pick-up run did for one region."""

    lan_code: str
    archived: int = 0
    vanished: int = 0
    recovered: int = 0
    skipped: str | None = None
    drop_error: str | None = None


def archived_name(now: datetime, row_id: str, original: str) -> str:
    """The archive name: time, row id prefix, original name (shortened to fit if needed)."""
    prefix = f"{now:%Y%m%dT%H%M%SZ}_{row_id[:8]}_"
    room = MAX_NAME_BYTES - len(prefix.encode())
    name = original
    while len(name.encode()) > room:
        name = name[:-1]
    return prefix + name


def _sighting_key(name: str, size: int, mtime: datetime, sha256: str) -> str:
    text = f"{name}\0{size}\0{mtime.isoformat()}\0{sha256}"
    return hashlib.sha256(text.encode()).hexdigest()


def _archive(
    engine: Engine, drop: Drop, row_id: str, original: str, target: str, worker_id: str
) -> str:
    """Move one claimed file into the archive and record it; returns the row's final state."""
    now = utcnow()
    try:
        drop.move(EXTRACTS, original, ARCHIVE, target)
    except DropFileNotFound:
        if not drop.exists(ARCHIVE, target):
            with engine.begin() as connection:
                connection.execute(
                    update(extracts)
                    .where(extracts.c.id == row_id)
                    .values(state="vanished", claimed_until=None, error="removed by the region")
                )
            return "vanished"
    data = drop.read(ARCHIVE, target)
    with engine.begin() as connection:
        connection.execute(
            update(extracts)
            .where(extracts.c.id == row_id)
            .values(
                state="archived",
                archived_at=now,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                claimed_until=None,
            )
        )
        record_access(
            connection, system_actor(f"worker:{worker_id}"), Action.EXTRACT_PICKED_UP, detail=target
        )
    return "archived"


def _recover(
    engine: Engine, drop: Drop, worker_id: str, settings: JobSettings, report: PickupReport
) -> None:
    now = utcnow()
    with engine.begin() as connection:
        # Conditional claim of expired rows: a live worker's rows are left alone.
        stale: list[Row[Any]] = list(
            connection.execute(
                update(extracts)
                .where(
                    extracts.c.state == "claimed",
                    extracts.c.claimed_until < now,
                )
                .values(claimed_by=worker_id, claimed_until=now + settings.lease)
                .returning(extracts.c.id, extracts.c.original_name, extracts.c.archived_name)
            )
        )
    for row in stale:
        state = _archive(engine, drop, row.id, row.original_name, row.archived_name, worker_id)
        report.recovered += 1
        if state == "vanished":
            report.vanished += 1


def _pickup_file(
    engine: Engine, drop: Drop, file: DropFile, worker_id: str, settings: JobSettings
) -> str | None:
    """Claim, archive and record one file; None if another worker had already claimed it."""
    data = drop.read(EXTRACTS, file.name)
    digest = hashlib.sha256(data).hexdigest()
    now = utcnow()
    row_id = str(uuid.uuid4())
    target = archived_name(now, row_id, file.name)
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(extracts).values(
                    id=row_id,
                    original_name=file.name,
                    archived_name=target,
                    sha256=digest,
                    size=len(data),
                    source_mtime=file.mtime,
                    sighting_key=_sighting_key(file.name, len(data), file.mtime, digest),
                    state="claimed",
                    picked_up_at=now,
                    claimed_by=worker_id,
                    claimed_until=now + settings.lease,
                )
            )
    except IntegrityError:
        return None  # another worker saw the very same file first
    return _archive(engine, drop, row_id, file.name, target, worker_id)


def pickup_region(
    hub: Hub, region: MemberRegion, settings: JobSettings, worker_id: str
) -> PickupReport:
    """One pick-up run for one region; an ended region's extracts are left where they are."""
    lan = region.lan_code
    report = PickupReport(lan)
    if region.ended_at is not None:
        report.skipped = "the region's agreement has ended"
        return report
    engine = hub.db.region(lan)
    with region_drop(hub, region, settings.backoff) as session:
        if session.skipped:
            report.skipped = "backing off"
            return report
        drop = session.open()
        _recover(engine, drop, worker_id, settings, report)
        for file in drop.list_files(EXTRACTS):
            outcome = _pickup_file(engine, drop, file, worker_id, settings)
            if outcome == "archived":
                report.archived += 1
            elif outcome == "vanished":
                report.vanished += 1
    if session.error is not None:
        report.drop_error = str(session.error)
        return report
    if report.archived or report.vanished:
        log.info("region %s: %d extract(s) archived for intake", lan, report.archived)
    return report


def pickup_all(hub: Hub, settings: JobSettings, worker_id: str) -> list[PickupReport]:
    """One pick-up run over every registered region."""
    with hub.db.hub.connect() as connection:
        regions = list_regions(connection)
    reports = []
    for region in regions:
        try:
            reports.append(pickup_region(hub, region, settings, worker_id))
        except StoreMissing as exc:
            log.warning("region %s: extract pick-up skipped: %s", region.lan_code, exc)
        except Exception:
            log.exception("region %s: extract pick-up failed", region.lan_code)
    return reports


def waiting_for_intake(hub: Hub, lan_code: str) -> list[Row[Any]]:
    """Archived extracts no intake has taken yet (for the intake service and tests)."""
    with hub.db.region(lan_code).connect() as connection:
        return list(
            connection.execute(
                select(extracts)
                .where(extracts.c.state == "archived")
                .order_by(extracts.c.picked_up_at)
            )
        )
