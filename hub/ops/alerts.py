"""Operator alerts: refused, misconfigured and exhausted outbox records, hub-wide.

Alerts live in the hub schema for the agent's operators and carry no personal data (ids, codes
and masked texts only); the senders raise them (:func:`hub.outbound.queue.record_attempts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from hub.audit import Action, record_operator
from hub.clock import as_utc, utcnow
from hub.context import Hub
from hub.db.hub_tables import alerts
from hub.tenancy.access import Actor


@dataclass(frozen=True)
class Alert:
    """An operator alert: which region's record, what happened; never personal data."""

    id: int
    at: datetime
    lan_code: str
    to_lan: str | None
    record_id: str | None
    kind: str
    code: str
    detail: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None


def list_alerts(
    hub: Hub, *, lan: str | None = None, include_acknowledged: bool = False, limit: int = 100
) -> list[Alert]:
    """Operator alerts, newest first; only open ones unless asked."""
    query = select(alerts).order_by(alerts.c.at.desc(), alerts.c.id.desc()).limit(limit)
    if lan is not None:
        query = query.where(alerts.c.lan_code == lan)
    if not include_acknowledged:
        query = query.where(alerts.c.acknowledged_at.is_(None))
    with hub.db.hub.connect() as connection:
        rows = connection.execute(query).all()
    return [
        Alert(
            r.id,
            as_utc(r.at),
            r.lan_code,
            r.to_lan,
            r.record_id,
            r.kind,
            r.code,
            r.detail,
            as_utc(r.acknowledged_at),
            r.acknowledged_by,
        )
        for r in rows
    ]


def acknowledge_alert(hub: Hub, alert_id: int, actor: Actor) -> bool:
    """Mark an alert as seen by ``actor``; False when there is no such open alert."""
    with hub.db.hub.begin() as connection:
        changed = connection.execute(
            update(alerts)
            .where(alerts.c.id == alert_id, alerts.c.acknowledged_at.is_(None))
            .values(acknowledged_at=utcnow(), acknowledged_by=actor.label)
        ).rowcount
        if changed:
            record_operator(connection, actor, Action.ALERT_ACKNOWLEDGED, None, f"alert {alert_id}")
    return bool(changed)
