"""Every table of the shared ``hub`` schema, declared once: no personal data lives here.

Alembic's ``hub`` environment (``migrations/hub``) compares against :data:`hub_metadata`, so a
table added here without a migration fails the drift test.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from hub.db.types import BigId

HUB_SCHEMA = "hub"

hub_metadata = MetaData(schema=HUB_SCHEMA)

# The region registry: member regions, their agreements, environments and drops.
regions = Table(
    "regions",
    hub_metadata,
    Column("lan_code", String(2), primary_key=True),
    Column("hsa_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("organisation_number", String(20)),
    Column("drop_url", String(500)),
    Column("drop_settings", JSON, nullable=False, default=dict),
    Column("agreement_signed", Date),
    Column("platform_confirmed", Date),
    Column("environment", String(8), nullable=False, default="SIT"),
    Column("active_from", Date),
    Column("active_to", Date),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

region_keys = Table(
    "region_keys",
    hub_metadata,
    Column("lan_code", String(2), primary_key=True),
    # The region's data key, wrapped (AES-GCM) with the hub's master key.
    Column("wrapped_key", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("destroyed_at", DateTime(timezone=True)),
)

# What operators did (onboarding, offboarding, resends, acknowledgements): never personal data.
operator_audit = Table(
    "operator_audit",
    hub_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("lan_code", String(2)),
    Column("detail", Text, nullable=False, default=""),
)

# Each region's drop health and backoff (hub.drops.state).
drop_state = Table(
    "drop_state",
    hub_metadata,
    Column("lan_code", String(2), primary_key=True),
    # None until the first attempt: "unknown" is not the same as "down".
    Column("reachable", Boolean),
    Column("last_check_at", DateTime(timezone=True)),
    Column("last_success_at", DateTime(timezone=True)),
    Column("last_failure_at", DateTime(timezone=True)),
    Column("failing_since", DateTime(timezone=True)),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("error_permanent", Boolean, nullable=False, default=False),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("config_hash", String(64)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Which ``agenthub worker`` processes are alive, for ``drops status``.
worker_heartbeats = Table(
    "worker_heartbeats",
    hub_metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

# Operator alerts of the senders: ids, codes and masked texts only.
alerts = Table(
    "alerts",
    hub_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("lan_code", String(2), nullable=False),
    Column("to_lan", String(2)),
    Column("record_id", String(36)),
    # refused (ERROR answer), configuration (VP002–VP007, …), exhausted (attempts used up).
    Column("kind", String(20), nullable=False),
    Column("code", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("acknowledged_by", String(200)),
    Index("ix_alerts_open", "acknowledged_at", "at"),
)
