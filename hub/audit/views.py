"""A region's access log as its people (and the agent's operators) read it.

Who looked at which woman's data, when and why the hub let them (or did not): entries name the
woman by the keyed hash of her personnummer and its masked form only. Reading the log is itself
written to the log, since the masked form is personal data too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from hub.audit.log import Action, record_access
from hub.clock import as_utc
from hub.contract.personnummer import check
from hub.db.region_tables import access_log
from hub.tenancy.access import Permission, RegionScope


@dataclass(frozen=True)
class AccessLogEntry:
    """One line of a region's access log."""

    id: int
    at: datetime
    actor: str
    user_id: int | None
    actor_name: str | None
    hsa_id: str | None
    role: str | None
    action: str
    message_id: str | None
    resource: str | None
    masked_pnr: str | None
    outcome: str
    request_id: str | None
    detail: str


def list_access_log(
    scope: RegionScope,
    *,
    limit: int = 100,
    before_id: int | None = None,
    personnummer: str | None = None,
) -> list[AccessLogEntry]:
    """The newest entries of the scope's access log (older than ``before_id`` for the next page).

    ``personnummer`` narrows it to one woman: who looked at her data (matched by keyed hash; a
    value that is not a valid personnummer matches nothing and is refused with ValueError).
    """
    scope.require(Permission.READ_ACCESS_LOG)
    query = select(access_log).order_by(access_log.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(access_log.c.id < before_id)
    if personnummer is not None:
        if check(personnummer) is not None:
            raise ValueError("not a valid personnummer (12 digits YYYYMMDDNNNN)")
        query = query.where(access_log.c.pnr_hash == scope.cipher.keyed_hash(personnummer))
    with scope.engine.begin() as connection:
        rows = connection.execute(query).all()
        record_access(
            connection,
            scope.actor,
            Action.ACCESS_LOG_VIEWED,
            resource="access-log",
            detail=f"{len(rows)} rows" + (" for one woman" if personnummer else ""),
            pnr_hash=scope.cipher.keyed_hash(personnummer) if personnummer else None,
        )
    return [
        AccessLogEntry(
            id=row.id,
            at=as_utc(row.at),
            actor=row.actor,
            user_id=row.user_id,
            actor_name=row.actor_name,
            hsa_id=row.hsa_id,
            role=row.role,
            action=row.action,
            message_id=row.message_id,
            resource=row.resource,
            masked_pnr=row.masked_pnr,
            outcome=row.outcome,
            request_id=row.request_id,
            detail=row.detail,
        )
        for row in rows
    ]
