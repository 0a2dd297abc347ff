"""What a region (or an operator) sees of its outbox: lists, one record, what went over the wire.

Personnummer are masked in every view; opening a record or its envelopes is access-logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from hub.audit import Action, record_access
from hub.clock import as_utc
from hub.db.region_tables import outbox, outbox_attempts
from hub.outbound.states import QUEUED, STATES, OutboxError
from hub.tenancy.access import Permission, RegionScope
from hub.tenancy.keys import RegionCipher, masked_personnummer


@dataclass(frozen=True)
class OutboxView:
    """One record as a list shows it: personnummer masked, texts masked."""

    id: str
    created_at: datetime
    to_lan: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    kind: str
    masked_pnr: str
    result_code: str | None
    result_text: str | None
    fault_code: str | None
    last_error: str | None
    correlation_id: str
    reference: str | None
    final_at: datetime | None
    receipt_name: str | None


@dataclass(frozen=True)
class AttemptView:
    """One attempt of a record, as the region's log holds it (envelopes stay sealed)."""

    attempt: int
    started_at: datetime
    duration_ms: int
    outcome: str
    code: str
    http_status: int | None
    correlation_id: str | None
    detail: str


def _view(row: Any, cipher: RegionCipher) -> OutboxView:
    return OutboxView(
        id=row.id,
        created_at=as_utc(row.created_at),
        to_lan=row.to_lan,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=as_utc(row.next_attempt_at) if row.state == QUEUED else None,
        kind=row.kind,
        masked_pnr=masked_personnummer(cipher, row.pnr_enc),
        result_code=row.result_code,
        result_text=row.result_text,
        fault_code=row.fault_code,
        last_error=row.last_error,
        correlation_id=row.correlation_id,
        reference=row.reference,
        final_at=as_utc(row.final_at),
        receipt_name=row.receipt_name,
    )


def list_outbox(
    scope: RegionScope, *, state: str | None = None, limit: int = 100
) -> list[OutboxView]:
    """The newest records of the scope's outbox; the listing goes to its access log."""
    scope.require(Permission.READ_METADATA)
    if state is not None and state not in STATES:
        raise OutboxError(f"state must be one of {', '.join(STATES)}")
    query = select(outbox).order_by(outbox.c.created_at.desc(), outbox.c.id).limit(limit)
    if state is not None:
        query = query.where(outbox.c.state == state)
    with scope.engine.begin() as connection:
        rows = connection.execute(query).all()
        record_access(connection, scope.actor, Action.OUTBOX_LISTED, detail=f"{len(rows)} rows")
    return [_view(row, scope.cipher) for row in rows]


def get_record(scope: RegionScope, record_id: str) -> tuple[OutboxView, list[AttemptView]] | None:
    """One record of the scope's outbox with its attempts, or None (another region's id too)."""
    scope.require(Permission.READ_METADATA)
    with scope.engine.begin() as connection:
        row = connection.execute(select(outbox).where(outbox.c.id == record_id)).first()
        if row is None:
            return None
        tries = connection.execute(
            select(outbox_attempts)
            .where(outbox_attempts.c.outbox_id == record_id)
            .order_by(outbox_attempts.c.attempt, outbox_attempts.c.id)
        ).all()
        record_access(connection, scope.actor, Action.OUTBOX_READ, message_id=record_id)
    views = [
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
    ]
    return _view(row, scope.cipher), views


def read_envelopes(scope: RegionScope, record_id: str) -> tuple[bytes, list[bytes | None]] | None:
    """The request as sent and each attempt's response as received (decrypted), logged."""
    scope.require(Permission.READ_CONTENT)
    cipher = scope.cipher
    with scope.engine.begin() as connection:
        row = connection.execute(
            select(outbox.c.request_enc).where(outbox.c.id == record_id)
        ).first()
        if row is None:
            return None
        responses = connection.execute(
            select(outbox_attempts.c.response_enc)
            .where(outbox_attempts.c.outbox_id == record_id)
            .order_by(outbox_attempts.c.attempt, outbox_attempts.c.id)
        ).all()
        record_access(connection, scope.actor, Action.OUTBOX_ENVELOPES_READ, message_id=record_id)
    return cipher.open(row.request_enc, "outbox-request"), [
        cipher.open(r.response_enc, "outbox-response") if r.response_enc is not None else None
        for r in responses
    ]
