"""What a region's people see of its review queue: records' states, lists and single records."""

from __future__ import annotations

from sqlalchemy import select

from hub.db.region_tables import review_records
from hub.tenancy.access import NotFound, Permission, RegionScope


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
