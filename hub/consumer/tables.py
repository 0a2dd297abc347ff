"""Tables of the consumer side: a region's outbox and send log, and the hub's operator alerts.

The outbox and its attempt log live in the sending region's own store (region schema), sealed with
that region's key: they hold personal data and are the region's, not the hub's. Alerts live in the
hub schema for the agent's operators and carry no personal data (ids, codes and masked texts only).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from hub.tables import _BigId, hub_metadata, region_metadata

# States of an outbox record. queued → sending → delivered | refused | failed; a resend puts a
# sending record back to queued with a later next_attempt_at.
QUEUED: Final = "queued"
SENDING: Final = "sending"
DELIVERED: Final = "delivered"
REFUSED: Final = "refused"
FAILED: Final = "failed"
FINAL_STATES: Final = (DELIVERED, REFUSED, FAILED)
STATES: Final = (QUEUED, SENDING, *FINAL_STATES)

outbox = Table(
    "outbox",
    region_metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Who approved the disclosure (a reviewer, or an operator through the CLI).
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
    Column("id", _BigId, primary_key=True, autoincrement=True),
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

alerts = Table(
    "alerts",
    hub_metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
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
