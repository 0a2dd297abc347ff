"""Retention: what the hub may forget, and when. Deliberately conservative.

Purged (``AGENTHUB_RETENTION_BODY_DAYS``, default 90; ``0`` turns purging off): the encrypted
request body and the encrypted parsed fields of a message that was **delivered** to its region
more than that many days ago. The region has had the information in its drop all that time.

Kept: the message row itself (ids, times, sender, result code, delivery record, the keyed hashes
that make a resend idempotent, the encrypted personnummer for lookups) and every access-log line:
the record that the hub received and handed over a message is evidence a region may need later.
Never purged: anything not yet delivered, failed deliveries (an operator must look at them),
files in a region's drop (the region owns its drop) and extract archives (the intake issue
decides their life cycle). Ending a region's agreement and destroying its key
(``agenthub region end --destroy-key``) is how *all* of a region's data becomes unreadable.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import update

from hub.audit import Action, record_access
from hub.clock import utcnow
from hub.context import Hub
from hub.db.region_tables import messages
from hub.tenancy.access import system_actor

log = logging.getLogger(__name__)


RETENTION_ACTOR = system_actor("worker:retention")


def purge_region(hub: Hub, lan_code: str, retention_days: int, now: datetime | None = None) -> int:
    """Empty the bodies of messages delivered more than ``retention_days`` ago; return how many.

    ``retention_days`` 0 purges nothing.
    """
    if retention_days <= 0:
        return 0
    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days)
    with hub.db.region(lan_code).begin() as connection:
        purged = int(
            connection.execute(
                update(messages)
                .where(
                    messages.c.delivery_state == "delivered",
                    messages.c.delivered_at < cutoff,
                    messages.c.body_enc.is_not(None),
                )
                .values(body_enc=None, fields_enc=None)
            ).rowcount
        )
        if purged:
            record_access(
                connection,
                RETENTION_ACTOR,
                Action.MESSAGES_PURGED,
                detail=f"{purged} bodies delivered before {cutoff:%Y-%m-%d}",
            )
    if purged:
        log.info("region %s: purged %d delivered bodies", lan_code, purged)
    return purged
