"""Every table of a region's own store, declared once, in the placeholder schema ``region``.

At run time the engine of one region translates ``region`` (``schema_translate_map``) to
``region_<län code>`` on PostgreSQL, or to the region's own SQLite file. Schema names come only
from the region registry, never from request data. Personal data in these tables is sealed with
the region's own key (:mod:`hub.tenancy.keys`); lookups use keyed hashes.

Alembic's ``region`` environment (``migrations/region``) compares against
:data:`region_metadata`, so a table added here without a migration fails the drift test.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
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

from hub.db.types import BigId

REGION_SCHEMA = "region"

region_metadata = MetaData(schema=REGION_SCHEMA)

# Inbound: what NTjP delivered for the region's women, and its delivery to the region's drop.
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
    # "information", or "no_information" for an R1 message (docs/contract.md, R1).
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

# The region's access log: who did what to which of its data, and when (hub.audit).
access_log = Table(
    "access_log",
    region_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("message_id", String(36)),
    Column("detail", Text, nullable=False, default=""),
)

# Extract files picked up from the region's ``extracts/`` folder (hub.intake.pickup): their
# checksum and where in ``extracts/.archive/`` they now lie. ``state`` is ``claimed`` while a
# worker moves one, ``archived`` when it waits for intake, ``vanished`` when the region removed
# the file before the hub could archive it.
extracts = Table(
    "extracts",
    region_metadata,
    Column("id", String(36), primary_key=True),
    Column("original_name", String(255), nullable=False),
    Column("archived_name", String(255), nullable=False, unique=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("source_mtime", DateTime(timezone=True)),
    # Hash of (name, size, mtime, sha256): two workers that see the same file insert the same
    # key, so only one of them gets to archive it.
    Column("sighting_key", String(64), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("picked_up_at", DateTime(timezone=True), nullable=False),
    Column("archived_at", DateTime(timezone=True)),
    Column("claimed_by", String(64)),
    Column("claimed_until", DateTime(timezone=True)),
    Column("error", Text),
    Index("ix_extracts_state", "state"),
)

# Outbound: records approved for disclosure and their sending (hub.outbound). They hold personal
# data and are the region's, not the hub's.
outbox = Table(
    "outbox",
    region_metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Who approved the disclosure.
    Column("created_by", String(200), nullable=False),
    Column("to_lan", String(2), nullable=False),
    Column("state", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    # A claim: the worker's token and how long it holds the record (a crashed worker's claim
    # expires and the record is picked up again; the producer is idempotent).
    Column("claimed_by", String(64)),
    Column("claimed_until", DateTime(timezone=True)),
    Column("correlation_id", String(64), nullable=False),
    # Keyed hashes (region key): dedupe of an approval and lookup by person without clear text.
    Column("content_hash", String(64), nullable=False),
    Column("pnr_hash", String(64), nullable=False),
    Column("pnr_enc", LargeBinary, nullable=False),
    # The SOAP request envelope exactly as it is sent on every attempt, sealed.
    Column("request_enc", LargeBinary, nullable=False),
    Column("kind", String(20), nullable=False),
    # Flags and counts only, never personal data.
    Column("summary", JSON, nullable=False),
    # The caller's own reference (an extract name and line, a file name): no personal data.
    Column("reference", String(200)),
    # INFO from our own validation at enqueue (e.g. a planned date in the past).
    Column("check_text", Text),
    Column("result_code", String(5)),
    Column("result_text", Text),
    Column("fault_code", String(32)),
    Column("last_error", Text),
    Column("final_at", DateTime(timezone=True)),
    Column("receipt_name", String(255)),
    Column("receipt_at", DateTime(timezone=True)),
    Index("ix_outbox_due", "to_lan", "state", "next_attempt_at"),
    Index("ix_outbox_receipt", "state", "receipt_at"),
    Index("ix_outbox_pnr_hash", "pnr_hash"),
    UniqueConstraint("to_lan", "content_hash", name="uq_outbox_content"),
)

outbox_attempts = Table(
    "outbox_attempts",
    region_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("outbox_id", String(36), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("worker", String(64), nullable=False),
    # delivered / refused / retry / failed: what this attempt led to.
    Column("outcome", String(10), nullable=False),
    # OK, INFO, ERROR, VPnnn, TIMEOUT, CONNECT, TLS, HTTP<status>, FAULT, UNREADABLE, …
    Column("code", String(32), nullable=False),
    Column("http_status", Integer),
    Column("correlation_id", String(128)),
    # The response exactly as received, sealed (None when nothing came back).
    Column("response_enc", LargeBinary),
    # A short, masked description for operators.
    Column("detail", Text, nullable=False),
    Index("ix_outbox_attempts_outbox", "outbox_id"),
)
