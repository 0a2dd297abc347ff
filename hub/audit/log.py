"""Writers of the access log and the operator audit (see :mod:`hub.audit`)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, insert

from hub.clock import utcnow
from hub.db.hub_tables import operator_audit
from hub.db.region_tables import access_log

if TYPE_CHECKING:
    from hub.tenancy.access import Actor


class Action(enum.StrEnum):
    """Every action the logs record, by the name they record it under."""

    # A region's access log: views of its data.
    MESSAGES_LISTED = "messages.listed"
    MESSAGE_READ = "message.read"
    OUTBOX_LISTED = "outbox.listed"
    OUTBOX_READ = "outbox.read"
    OUTBOX_ENVELOPES_READ = "outbox.envelopes.read"
    # A region's access log: what the hub did with its data.
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGES_PURGED = "messages.purged"
    EXTRACT_PICKED_UP = "extract.picked_up"
    OUTBOX_ENQUEUED = "outbox.enqueued"
    OUTBOX_RESEND = "outbox.resend"
    # The operator audit.
    REGION_ADDED = "region.added"
    REGION_UPDATED = "region.updated"
    REGION_ENDED = "region.ended"
    ALERT_ACKNOWLEDGED = "alert.acknowledged"


@dataclass(frozen=True)
class AccessEntry:
    """One line of a region's access log, for :func:`record_access_many`."""

    action: Action
    message_id: str | None = None
    detail: str = ""
    at: datetime | None = None


def record_access(
    connection: Connection,
    actor: Actor,
    action: Action,
    *,
    message_id: str | None = None,
    detail: str = "",
) -> None:
    """Write one line to the access log of the region whose store ``connection`` is on."""
    record_access_many(connection, actor, [AccessEntry(action, message_id, detail)])


def record_access_many(
    connection: Connection, actor: Actor, entries: Iterable[AccessEntry]
) -> None:
    """Write several lines of one actor to a region's access log in one statement."""
    now = utcnow()
    rows = [
        {
            "at": entry.at or now,
            "actor": actor.label,
            "action": entry.action.value,
            "message_id": entry.message_id,
            "detail": entry.detail,
        }
        for entry in entries
    ]
    if rows:
        connection.execute(insert(access_log), rows)


def record_operator(
    connection: Connection, actor: Actor, action: Action, lan_code: str | None, detail: str
) -> None:
    """Write one line to the operator audit (hub schema; no personal data goes here)."""
    connection.execute(
        insert(operator_audit).values(
            at=utcnow(), actor=actor.label, action=action.value, lan_code=lan_code, detail=detail
        )
    )
