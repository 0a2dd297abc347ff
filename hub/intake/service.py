"""Intake: records a region delivers, into its review queue — the one way in for every source.

:func:`take_in` takes records already in memory (a record entered in the form, one posted to the
API, ``agenthub send``): it opens an intake, checks and stores every record
(:mod:`hub.review.records`) and reports what became of each, in one transaction. Files (the
drop's extracts, uploads, ``agenthub extract load``) go through the same record check and store,
streamed.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from hub.audit import Action, record_access
from hub.clock import swedish_today, utcnow
from hub.db.region_tables import intake_rejections, intakes
from hub.review.records import Prepared, RecordRefused, Stored, Submission, prepare, store
from hub.tenancy.access import Permission, RegionScope

log = logging.getLogger(__name__)

#: Where a record comes from.
SOURCES: Final = ("drop", "upload", "api", "form", "cli")


class IntakeRefused(ValueError):
    """Nothing can be taken in (the region's agreement is not active, an unknown source)."""


@dataclass
class IntakeReport:
    """What an intake did: counts, and per record in order its outcome or why it was refused."""

    intake_id: str
    rows_read: int = 0
    queued: int = 0
    own_region: int = 0
    duplicates: int = 0
    superseded: int = 0
    rejected: int = 0
    results: list[Stored | RecordRefused] = field(default_factory=list)
    report_name: str | None = None

    def count(self, stored: Stored) -> None:
        """Add one stored record to the counts."""
        if stored.outcome == "queued":
            self.queued += 1
        elif stored.outcome == "duplicate":
            self.duplicates += 1
        else:
            self.own_region += 1
        self.superseded += len(stored.superseded)


def require_active(scope: RegionScope) -> None:
    """Refuse an intake for a region whose agreement is not active today."""
    if not scope.region.is_active(swedish_today()):
        raise IntakeRefused(f"region {scope.lan}: the agreement is not active")


def take_in(
    scope: RegionScope, submissions: Sequence[Submission], *, source: str, name: str
) -> IntakeReport:
    """Check and queue records already in memory for the review; one transaction for all."""
    scope.require(Permission.SUBMIT)
    if source not in SOURCES:
        raise IntakeRefused(f"unknown intake source {source!r}")
    require_active(scope)
    today = swedish_today()
    report = IntakeReport(intake_id=str(uuid.uuid4()))
    prepared: list[Prepared] = []
    answers: list[Prepared | RecordRefused] = []
    digest = hashlib.sha256()
    for submission in submissions:
        report.rows_read += 1
        try:
            item = prepare(scope, submission, today)
        except RecordRefused as refused:
            answers.append(refused)
            continue
        digest.update(item.row.get("content_sha256", "own").encode())
        prepared.append(item)
        answers.append(item)
    now = utcnow()
    actor = scope.actor
    with scope.engine.begin() as connection:
        connection.execute(
            intakes.insert().values(
                id=report.intake_id,
                created_at=now,
                updated_at=now,
                source=source,
                actor=actor.label,
                user_id=actor.user_id,
                original_name=name[:255],
                format="records",
                sha256=digest.hexdigest(),
                size=len(submissions),
                chunks=0,
                state="running",
            )
        )
        stored = iter(store(scope, connection, report.intake_id, prepared))
        rejections = []
        for submission, answer in zip(submissions, answers, strict=True):
            if isinstance(answer, RecordRefused):
                report.rejected += 1
                report.results.append(answer)
                rejections.append(
                    {
                        "intake_id": report.intake_id,
                        "line": submission.line,
                        "field": answer.field[:200],
                        "rule": answer.rule[:100],
                        "reason": answer.reason,
                    }
                )
                continue
            result = next(stored)
            report.count(result)
            report.results.append(result)
        if rejections:
            connection.execute(intake_rejections.insert(), rejections)
        connection.execute(
            intakes.update()
            .where(intakes.c.id == report.intake_id)
            .values(
                state="done",
                lines_done=report.rows_read,
                rows_read=report.rows_read,
                queued=report.queued,
                own_region=report.own_region,
                duplicates=report.duplicates,
                superseded=report.superseded,
                rejected=report.rejected,
                finished_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        record_access(
            connection,
            actor,
            Action.INTAKE_RECEIVED,
            resource=f"intake/{report.intake_id}",
            detail=f"{source}: {report.rows_read} read, {report.queued} queued, "
            f"{report.rejected} rejected",
        )
    log.info(
        "region %s: intake %s (%s): %d read, %d queued, %d duplicates, %d rejected",
        scope.lan,
        report.intake_id,
        source,
        report.rows_read,
        report.queued,
        report.duplicates,
        report.rejected,
    )
    return report
