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
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update

from hub.context import Hub
from hub.jobs.config import JobSettings
from hub.jobs.tables import worker_heartbeats
from hub.messages import log_access
from hub.tables import messages
from hub.tenancy.registry import list_regions

log = logging.getLogger(__name__)


def purge_region(
    hub: Hub, lan_code: str, settings: JobSettings, now: datetime | None = None
) -> int:
    """Empty the bodies of long-delivered messages in one region; return how many."""
    if settings.body_retention_days <= 0:
        return 0
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.body_retention_days)
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
            log_access(
                connection,
                "worker:retention",
                "messages.purged",
                None,
                f"{purged} bodies delivered before {cutoff:%Y-%m-%d}",
            )
    if purged:
        log.info("region %s: purged %d delivered bodies", lan_code, purged)
    return purged


def purge_all(hub: Hub, settings: JobSettings, now: datetime | None = None) -> dict[str, int]:
    """One retention run over every region; also forgets workers not seen for a day."""
    now = now or datetime.now(UTC)
    with hub.db.hub.begin() as connection:
        regions = list_regions(connection)
        connection.execute(
            delete(worker_heartbeats).where(worker_heartbeats.c.seen_at < now - timedelta(days=1))
        )
    return {r.lan_code: purge_region(hub, r.lan_code, settings, now) for r in regions}
