"""Table definitions: the shared ``hub`` schema and the per-region ``region`` schema.

Region tables are declared in the placeholder schema ``region``; at run time the engine of one
region translates it (``schema_translate_map``) to ``region_<län code>`` on PostgreSQL, or to the
region's own SQLite file. Schema names come only from the region registry, never from request data.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
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
    UniqueConstraint,
)

HUB_SCHEMA = "hub"
REGION_SCHEMA = "region"

# Identity columns: BigInteger on PostgreSQL, INTEGER (rowid alias) on SQLite.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

hub_metadata = MetaData(schema=HUB_SCHEMA)
region_metadata = MetaData(schema=REGION_SCHEMA)

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

operator_audit = Table(
    "operator_audit",
    hub_metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("lan_code", String(2)),
    Column("detail", Text, nullable=False, default=""),
)

messages = Table(
    "messages",
    region_metadata,
    Column("id", String(36), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("logical_address", String(64), nullable=False),
    Column("sender_hsaid", String(64)),
    Column("original_consumer_hsaid", String(64)),
    Column("correlation_id", String(128)),
    # Keyed hash (region key) of the canonical content: the idempotency key of a resend.
    Column("content_hash", String(64), nullable=False),
    # Keyed hash of the personnummer: lookups never use the clear number.
    Column("pnr_hash", String(64), nullable=False),
    Column("pnr_enc", LargeBinary, nullable=False),
    # Emptied (NULL) by the retention job once a message was delivered long enough ago.
    Column("body_enc", LargeBinary),
    Column("fields_enc", LargeBinary),
    # "information", or "no_information" for an R1 message (CONTRACT.md §3.7).
    Column("kind", String(20), nullable=False),
    # Flags and counts only, never personal data: safe to list and filter on.
    Column("summary", JSON, nullable=False, default=dict),
    Column("result_code", String(5), nullable=False),
    Column("result_text", Text),
    Column("delivery_state", String(12), nullable=False, default="pending"),
    Column("delivery_attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("delivery_error", Text),
    Column("delivered_name", String(255)),
    Column("claimed_by", String(64)),
    Column("claimed_until", DateTime(timezone=True)),
    Index("ix_messages_pnr_hash", "pnr_hash"),
    Index("ix_messages_delivery", "delivery_state", "next_attempt_at"),
    Index("ix_messages_delivered", "delivery_state", "delivered_at"),
    UniqueConstraint("content_hash", name="uq_messages_content_hash"),
)

access_log = Table(
    "access_log",
    region_metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("message_id", String(36)),
    Column("detail", Text, nullable=False, default=""),
)
