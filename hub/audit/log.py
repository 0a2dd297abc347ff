"""Writers of the access log and the operator audit (see :mod:`hub.audit`)."""

from __future__ import annotations

import contextvars
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

#: The id of the request being served (the web layer sets it): every entry of the request names
#: it, so a region can follow one request across its log.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agenthub_request_id", default=None
)


class Action(enum.StrEnum):
    """Every action the logs record, by the name they record it under."""

    # A region's access log: views of its data.
    MESSAGES_LISTED = "messages.listed"
    MESSAGE_READ = "message.read"
    RECEIVED_VIEWED = "received.viewed"
    RECEIVED_DOWNLOADED = "received.downloaded"
    ACCESS_LOG_VIEWED = "access_log.viewed"
    OUTBOX_LISTED = "outbox.listed"
    OUTBOX_READ = "outbox.read"
    OUTBOX_ENVELOPES_READ = "outbox.envelopes.read"
    # A region's access log: what the hub did with its data.
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGES_PURGED = "messages.purged"
    EXTRACT_PICKED_UP = "extract.picked_up"
    OUTBOX_RESEND = "outbox.resend"
    # The review: records taken in, listed, opened, decided.
    INTAKE_RECEIVED = "intake.received"
    RECORDS_LISTED = "records.listed"
    RECORD_OPENED = "record.opened"
    RECORD_APPROVED = "record.approved"
    RECORD_REFUSED = "record.refused"
    # The operator audit.
    REGION_ADDED = "region.added"
    REGION_UPDATED = "region.updated"
    REGION_ENDED = "region.ended"
    REGION_REINSTATED = "region.reinstated"
    ALERT_ACKNOWLEDGED = "alert.acknowledged"
    # The operator audit: the people who sign in, and their API tokens.
    USER_ADDED = "user.added"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_ROLES_CHANGED = "user.roles_changed"
    USER_UNLOCKED = "user.unlocked"
    USER_PASSWORD_SET = "user.password_set"  # noqa: S105 (an action name)
    USER_TOTP_ENROLLED = "user.totp_enrolled"
    TOKEN_CREATED = "token.created"  # noqa: S105 (an action name)
    TOKEN_REVOKED = "token.revoked"  # noqa: S105 (an action name)


@dataclass(frozen=True)
class AccessEntry:
    """One line of a region's access log, for :func:`record_access_many`."""

    action: Action
    #: The record or message concerned, if one is.
    message_id: str | None = None
    detail: str = ""
    at: datetime | None = None
    #: What was accessed when it is not one record: a list, a download, the log itself.
    resource: str | None = None
    #: The woman concerned: the keyed hash of her personnummer, and its masked form.
    pnr_hash: str | None = None
    masked_pnr: str | None = None
    #: ``ok``, or ``denied`` for an attempt the hub refused.
    outcome: str = "ok"


def record_access(
    connection: Connection,
    actor: Actor,
    action: Action,
    *,
    message_id: str | None = None,
    detail: str = "",
    resource: str | None = None,
    pnr_hash: str | None = None,
    masked_pnr: str | None = None,
    outcome: str = "ok",
    role: str | None = None,
) -> None:
    """Write one line to the access log of the region whose store ``connection`` is on.

    ``role`` is the role the actor acted in (default: every role it holds).
    """
    entry = AccessEntry(action, message_id, detail, None, resource, pnr_hash, masked_pnr, outcome)
    record_access_many(connection, actor, [entry], role=role)


def record_access_many(
    connection: Connection,
    actor: Actor,
    entries: Iterable[AccessEntry],
    *,
    role: str | None = None,
) -> None:
    """Write several lines of one actor to a region's access log in one statement."""
    now = utcnow()
    request = request_id.get()
    rows = [
        {
            "at": entry.at or now,
            "actor": actor.label,
            "user_id": actor.user_id,
            "actor_name": actor.name,
            "hsa_id": actor.hsa_id,
            "role": role or actor.role_label,
            "action": entry.action.value,
            "message_id": entry.message_id,
            "resource": entry.resource,
            "pnr_hash": entry.pnr_hash,
            "masked_pnr": entry.masked_pnr,
            "outcome": entry.outcome,
            "request_id": request,
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
