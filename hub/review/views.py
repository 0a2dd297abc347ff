"""What a region's people see of one review record: its state, and the record opened in full.

Opening a record (:func:`open_record`) is reading a woman's data (:attr:`Permission.READ_CONTENT`):
it returns the record as it will be sent (the parsed model, the clear personnummer, the hash the
reviewer decides on) and everything that happened to it, and writes exactly one
``record.opened`` line to the region's access log, with her keyed hash and masked personnummer.
A refused attempt (no right to read content, an id the region does not have) writes one line
too, marked ``denied``. Another region's ids are answered as ids that do not exist.
The queue's pages are :mod:`hub.review.queue`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from hub.audit import Action, record_access
from hub.clock import as_utc
from hub.contract.model import CervixScreeningInformation
from hub.contract.parse import information_from_element
from hub.contract.personnummer import mask
from hub.contract.xmlsafe import parse_untrusted
from hub.db.region_tables import decisions, intakes, outbox, outbox_attempts, review_records
from hub.outbound.views import AttemptView
from hub.review.content import content_sha256
from hub.tenancy.access import Forbidden, NotFound, Permission, RegionScope


def record_state(scope: RegionScope, record_id: str) -> str:
    """The state of one review record (metadata: no access-log entry); NotFound if none."""
    scope.require(Permission.READ_METADATA)
    with scope.engine.connect() as connection:
        state = connection.execute(
            select(review_records.c.state).where(review_records.c.id == record_id)
        ).scalar()
    if state is None:
        raise NotFound(f"region {scope.lan} has no record {record_id}")
    return str(state)


@dataclass(frozen=True)
class IntakeView:
    """Where a record came from: one intake (a file, an upload, an API call, the form)."""

    id: str
    created_at: datetime
    #: drop | upload | api | form | cli
    source: str
    #: Who delivered it (``user:alice``, ``worker:…``, ``cli:root``).
    actor: str
    user_id: int | None
    original_name: str
    format: str
    #: The extract file of the region's drop, for a file picked up there.
    extract_id: str | None


@dataclass(frozen=True)
class DecisionView:
    """One decision on a record, as the region's store keeps it (it never changes)."""

    id: str
    step: int
    outcome: str
    final: bool
    reason: str | None
    content_sha256: str
    to_lan: str
    protected_identity: bool
    blocked: bool
    objection: bool
    reviewer_user_id: int | None
    reviewer_name: str
    reviewer_hsa_id: str | None
    reviewer_role: str
    auth_method: str
    decided_at: datetime
    batch_id: str | None
    batch_size: int | None
    request_id: str | None


@dataclass(frozen=True)
class SentView:
    """The outbox record of an approved record: its sending, attempts and receipt."""

    id: str
    created_at: datetime
    #: Who approved the disclosure (the final approver's label).
    created_by: str
    state: str
    attempts: int
    correlation_id: str
    result_code: str | None
    result_text: str | None
    fault_code: str | None
    last_error: str | None
    final_at: datetime | None
    receipt_name: str | None
    receipt_at: datetime | None
    tries: tuple[AttemptView, ...]


@dataclass(frozen=True)
class SupersededBy:
    """The newer record that superseded this one, and who delivered it."""

    record_id: str
    created_at: datetime
    intake: IntakeView


@dataclass(frozen=True)
class OpenedRecord:
    """One review record opened: the woman's content and the record's whole history."""

    id: str
    state: str
    created_at: datetime
    updated_at: datetime
    to_lan: str
    kind: str
    protected_identity: bool
    blocked: bool
    objection: bool
    flagged: bool
    reference: str | None
    line: int
    summary: dict[str, Any]
    check_text: str | None
    #: The SHA-256 of the canonical form of the content shown here: what the reviewer decides on
    #: (computed from the content itself, so a decision can only name what was shown).
    content_sha256: str
    personnummer: str
    masked_pnr: str
    #: The record as it will be sent, parsed.
    information: CervixScreeningInformation
    #: The ``cervixScreeningInformation`` element exactly as stored (standalone UTF-8 XML).
    content_xml: bytes
    intake: IntakeView
    decisions: tuple[DecisionView, ...]
    decided_at: datetime | None
    sent: SentView | None
    superseded_by: SupersededBy | None
    #: Older records of the same woman and destination that this one superseded.
    supersedes: tuple[str, ...]
    #: The ``withheld`` receipt of a refused record, once written to the region's drop.
    receipt_name: str | None
    receipt_at: datetime | None


def _intake(connection: Connection, intake_id: str) -> IntakeView:
    row = connection.execute(select(intakes).where(intakes.c.id == intake_id)).one()
    return IntakeView(
        row.id,
        as_utc(row.created_at),
        row.source,
        row.actor,
        row.user_id,
        row.original_name,
        row.format,
        row.extract_id,
    )


def _decisions(connection: Connection, record_id: str) -> tuple[DecisionView, ...]:
    rows = connection.execute(
        select(decisions)
        .where(decisions.c.record_id == record_id)
        .order_by(decisions.c.step, decisions.c.decided_at)
    )
    return tuple(
        DecisionView(
            d.id,
            d.step,
            d.outcome,
            bool(d.final),
            d.reason,
            d.content_sha256,
            d.to_lan,
            bool(d.protected_identity),
            bool(d.blocked),
            bool(d.objection),
            d.reviewer_user_id,
            d.reviewer_name,
            d.reviewer_hsa_id,
            d.reviewer_role,
            d.auth_method,
            as_utc(d.decided_at),
            d.batch_id,
            d.batch_size,
            d.request_id,
        )
        for d in rows
    )


def _sent(connection: Connection, outbox_id: str | None) -> SentView | None:
    if outbox_id is None:
        return None
    row = connection.execute(select(outbox).where(outbox.c.id == outbox_id)).first()
    if row is None:
        return None
    tries = connection.execute(
        select(outbox_attempts)
        .where(outbox_attempts.c.outbox_id == outbox_id)
        .order_by(outbox_attempts.c.attempt, outbox_attempts.c.id)
    )
    return SentView(
        row.id,
        as_utc(row.created_at),
        row.created_by,
        row.state,
        row.attempts,
        row.correlation_id,
        row.result_code,
        row.result_text,
        row.fault_code,
        row.last_error,
        as_utc(row.final_at),
        row.receipt_name,
        as_utc(row.receipt_at),
        tuple(
            AttemptView(
                t.attempt,
                as_utc(t.started_at),
                t.duration_ms,
                t.outcome,
                t.code,
                t.http_status,
                t.correlation_id,
                t.detail,
            )
            for t in tries
        ),
    )


def _superseded_by(connection: Connection, record_id: str | None) -> SupersededBy | None:
    if record_id is None:
        return None
    newer = connection.execute(
        select(review_records.c.id, review_records.c.created_at, review_records.c.intake_id).where(
            review_records.c.id == record_id
        )
    ).one()
    return SupersededBy(newer.id, as_utc(newer.created_at), _intake(connection, newer.intake_id))


def _denied(scope: RegionScope, record_id: str, why: str) -> None:
    with scope.engine.begin() as connection:
        record_access(
            connection,
            scope.actor,
            Action.RECORD_OPENED,
            message_id=record_id,
            resource=f"review_record/{record_id}",
            outcome="denied",
            detail=why,
        )


def open_record(scope: RegionScope, record_id: str) -> OpenedRecord:
    """Open one review record: its content, the clear personnummer and its history.

    Writes exactly one access-log line. Raises :class:`Forbidden` for an actor who may not read
    content here (an operator, a submitter) and :class:`NotFound` for an id the region does not
    have (another region's ids too); both are logged as ``denied``.
    """
    if not scope.may(Permission.READ_CONTENT):
        _denied(scope, record_id, "not allowed to read content")
        raise Forbidden(f"{Permission.READ_CONTENT.value} is not allowed in region {scope.lan}")
    cipher = scope.cipher
    with scope.engine.begin() as connection:
        row = connection.execute(
            select(review_records).where(review_records.c.id == record_id)
        ).first()
        if row is None:
            found = None
        else:
            xml = cipher.open(row.content_enc, "review-content")
            element = parse_untrusted(xml)
            pnr = cipher.open(row.pnr_enc, "pnr").decode()
            history = (
                _intake(connection, row.intake_id),
                _decisions(connection, row.id),
                _sent(connection, row.outbox_id),
                _superseded_by(connection, row.superseded_by),
                tuple(
                    connection.execute(
                        select(review_records.c.id)
                        .where(review_records.c.superseded_by == row.id)
                        .order_by(review_records.c.created_at)
                    ).scalars()
                ),
            )
            found = (row, xml, element, pnr, history)
            record_access(
                connection,
                scope.actor,
                Action.RECORD_OPENED,
                message_id=row.id,
                resource=f"review_record/{row.id}",
                pnr_hash=row.pnr_hash,
                masked_pnr=mask(pnr),
                detail=f"state {row.state}",
            )
    if found is None:
        _denied(scope, record_id, "no such record")
        raise NotFound(f"region {scope.lan} has no record {record_id}")
    row, xml, element, pnr, (intake, decided, sent, superseded_by, supersedes) = found
    return OpenedRecord(
        id=row.id,
        state=row.state,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        to_lan=row.to_lan,
        kind=row.kind,
        protected_identity=bool(row.protected_identity),
        blocked=bool(row.blocked),
        objection=bool(row.objection),
        flagged=bool(row.flagged),
        reference=row.reference,
        line=int(row.line),
        summary=dict(row.summary or {}),
        check_text=row.check_text,
        content_sha256=content_sha256(element),
        personnummer=pnr,
        masked_pnr=mask(pnr),
        information=information_from_element(element),
        content_xml=xml,
        intake=intake,
        decisions=decided,
        decided_at=as_utc(row.decided_at),
        sent=sent,
        superseded_by=superseded_by,
        supersedes=supersedes,
        receipt_name=row.receipt_name,
        receipt_at=as_utc(row.receipt_at),
    )
