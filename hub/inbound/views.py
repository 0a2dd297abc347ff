"""What a region (or an operator) sees of its received messages: lists and single bodies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from hub.audit import Action, record_access
from hub.clock import as_utc
from hub.db.region_tables import messages
from hub.tenancy.access import Permission, RegionScope
from hub.tenancy.keys import masked_personnummer


@dataclass(frozen=True)
class MessageView:
    """One stored message as an operator or the region sees it in a list: personnummer masked."""

    id: str
    received_at: datetime
    kind: str
    masked_pnr: str
    result_code: str
    delivery_state: str
    sender_hsaid: str | None
    correlation_id: str | None
    summary: dict[str, Any]


def list_messages(scope: RegionScope, limit: int = 100) -> list[MessageView]:
    """The newest messages of the scope's region; the listing goes to its access log."""
    scope.require(Permission.READ_METADATA)
    with scope.engine.begin() as connection:
        rows = connection.execute(
            select(messages).order_by(messages.c.received_at.desc()).limit(limit)
        ).all()
        record_access(connection, scope.actor, Action.MESSAGES_LISTED, detail=f"{len(rows)} rows")
    return [
        MessageView(
            id=row.id,
            received_at=as_utc(row.received_at),
            kind=row.kind,
            masked_pnr=masked_personnummer(scope.cipher, row.pnr_enc),
            result_code=row.result_code,
            delivery_state=row.delivery_state,
            sender_hsaid=row.sender_hsaid,
            correlation_id=row.correlation_id,
            summary=dict(row.summary or {}),
        )
        for row in rows
    ]


def read_body(scope: RegionScope, message_id: str) -> bytes | None:
    """The body of one message as received (decrypted), logged in the region's access log.

    None when the region has no such message, or retention has already emptied its body.
    """
    scope.require(Permission.READ_CONTENT)
    with scope.engine.begin() as connection:
        row = connection.execute(
            select(messages.c.body_enc).where(messages.c.id == message_id)
        ).first()
        if row is None or row.body_enc is None:
            return None
        record_access(connection, scope.actor, Action.MESSAGE_READ, message_id=message_id)
    return scope.cipher.open(row.body_enc, "body")
