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
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
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
    # move | sample | treatment | no_information (an R1 message): the scenario, a best guess
    # from the content (hub.contract.model.CervixScreeningInformation.kind).
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

# The region's access log (PDL): who did what to which of its data, and when (hub.audit).
access_log = Table(
    "access_log",
    region_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    # Who: the actor's label (user:alice, worker:…, cli:root) and, for a person, their user id,
    # name, HSA-id and the role they acted in.
    Column("actor", String(200), nullable=False),
    Column("user_id", BigInteger),
    Column("actor_name", String(200)),
    Column("hsa_id", String(64)),
    Column("role", String(64)),
    # What: the activity (hub.audit.Action) and the resource (a record, a message, a list).
    Column("action", String(100), nullable=False),
    Column("message_id", String(36)),
    Column("resource", String(200)),
    # Which woman: the keyed hash of her personnummer and its masked form, when one is concerned.
    Column("pnr_hash", String(64)),
    Column("masked_pnr", String(16)),
    # ok, or denied (an attempt the hub refused is logged too).
    Column("outcome", String(16), nullable=False, server_default="ok"),
    Column("request_id", String(64)),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_access_log_at", "at"),
    Index("ix_access_log_pnr_hash", "pnr_hash"),
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

# Intake: every extract taken in (a file picked up from the drop, an upload, an API call, a record
# entered by hand, ``agenthub extract load``). The bytes wait, sealed with the region's key, in
# intake_chunks until the intake has read them all; progress is committed with the records it
# produced, so an intake killed midway resumes where it stopped and no row is taken twice.
intakes = Table(
    "intakes",
    region_metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # drop | upload | api | form | cli
    Column("source", String(10), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("user_id", BigInteger),
    # The file's name as the region gave it (no personal data in names, by the drop rules).
    Column("original_name", String(255), nullable=False),
    # The extracts row of a file picked up from the drop: one intake per picked-up file.
    Column("extract_id", String(36), unique=True),
    # xml | csv
    Column("format", String(8), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("chunks", Integer, nullable=False),
    # pending → running → done | failed
    Column("state", String(10), nullable=False),
    # Records of the file fully handled (queued, reported or rejected), committed with them.
    Column("lines_done", BigInteger, nullable=False, server_default="0"),
    Column("rows_read", BigInteger, nullable=False, server_default="0"),
    Column("queued", BigInteger, nullable=False, server_default="0"),
    Column("own_region", BigInteger, nullable=False, server_default="0"),
    Column("duplicates", BigInteger, nullable=False, server_default="0"),
    Column("superseded", BigInteger, nullable=False, server_default="0"),
    Column("rejected", BigInteger, nullable=False, server_default="0"),
    # The report in the drop's rejected/ folder, once written.
    Column("report_name", String(255)),
    Column("error", Text),
    Column("claimed_by", String(64)),
    Column("claimed_until", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_intakes_state", "state", "created_at"),
)

intake_chunks = Table(
    "intake_chunks",
    region_metadata,
    Column(
        "intake_id",
        String(36),
        ForeignKey("region.intakes.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", Integer, nullable=False),
    # A piece of the file, sealed with the region's key (purpose bound to intake id and seq).
    Column("data_enc", LargeBinary, nullable=False),
    PrimaryKeyConstraint("intake_id", "seq"),
)

# Rows of an extract the intake refused: where, which rule, why (personnummer masked).
intake_rejections = Table(
    "intake_rejections",
    region_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "intake_id",
        String(36),
        ForeignKey("region.intakes.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("line", BigInteger, nullable=False),
    Column("field", String(200), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_intake_rejections_intake", "intake_id", "line"),
)

# The review queue: one row per record a region wants to disclose to another region. Its content
# never changes once stored (a trigger refuses it): new content for the same woman is a new
# record that supersedes the undecided old one. Its state only moves forward (pending →
# second_review → approved | refused | superseded), and only to approved, refused or
# second_review with the decision that says so already stored (a trigger checks it).
review_records = Table(
    "review_records",
    region_metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("intake_id", String(36), ForeignKey("region.intakes.id"), nullable=False),
    # Where in the intake (a CSV line, an XML record's number).
    Column("line", BigInteger, nullable=False),
    # The region's own id of the record, echoed in every receipt: no personal data.
    Column("reference", String(200)),
    # The destination: the woman's home region.
    Column("to_lan", String(2), nullable=False),
    # move | sample | treatment | no_information (hub.contract.model.CervixScreeningInformation)
    Column("kind", String(20), nullable=False),
    # The connection guide's three flags, and "any of them" for the queue and the bulk check.
    Column("protected_identity", Boolean, nullable=False),
    Column("blocked", Boolean, nullable=False),
    Column("objection", Boolean, nullable=False),
    Column("flagged", Boolean, nullable=False),
    # SHA-256 of the canonical content (hub.contract.canonical): what a decision is taken on.
    Column("content_sha256", String(64), nullable=False),
    # Keyed hash (region key) of destination and content: finds a duplicate without clear text.
    Column("content_key", String(64), nullable=False),
    Column("pnr_hash", String(64), nullable=False),
    Column("pnr_enc", LargeBinary, nullable=False),
    # The cervixScreeningInformation element (standalone UTF-8 XML), sealed.
    Column("content_enc", LargeBinary, nullable=False),
    # Flags and counts only, never personal data.
    Column("summary", JSON, nullable=False),
    # Soft problems our validation found (INFO), shown to the reviewer.
    Column("check_text", Text),
    # pending | second_review | approved | refused | superseded
    Column("state", String(16), nullable=False),
    Column("superseded_by", String(36)),
    Column("decided_at", DateTime(timezone=True)),
    Column("outbox_id", String(36)),
    # The receipt of a refused (withheld) record, once written to the region's receipts/.
    Column("receipt_name", String(255)),
    Column("receipt_at", DateTime(timezone=True)),
    # The queue's pages (hub.review.views): oldest first within a state, by destination, and
    # the few flagged records on their own (a partial index: an unflagged record costs it nothing).
    Index("ix_review_records_queue", "state", "created_at", "id"),
    Index("ix_review_records_queue_to", "state", "to_lan", "created_at", "id"),
    # Its leading column is constant (true): it gives SQLite, which keeps no statistics unless
    # asked, one more equality to prefer it by over the whole queue's index.
    Index(
        "ix_review_records_queue_flagged",
        "flagged",
        "state",
        "created_at",
        "id",
        sqlite_where=text("flagged = 1"),
        postgresql_where=text("flagged"),
    ),
    Index("ix_review_records_intake", "intake_id", "line"),
    # What a record superseded (its history): only superseded records are in it.
    Index(
        "ix_review_records_superseded_by",
        "superseded_by",
        sqlite_where=text("superseded_by IS NOT NULL"),
        postgresql_where=text("superseded_by IS NOT NULL"),
    ),
    Index("ix_review_records_pnr_hash", "pnr_hash"),
    Index("ix_review_records_content_key", "content_key"),
    Index("ix_review_records_receipt", "state", "receipt_at"),
)

# Decisions of the manual secrecy review: append-only (triggers refuse UPDATE and DELETE), each
# on exactly the content, destination and flags of its record (a trigger compares them with the
# record's on INSERT, and refuses a decision on a record not waiting for one, and a second
# approval by the first approver). A record has at most one decision per step and one final
# decision. The outbox refers to a decision by (id, record, destination, hash, outcome, final), so
# the database itself refuses a record queued without a final approval of that content.
decisions = Table(
    "decisions",
    region_metadata,
    Column("id", String(36), primary_key=True),
    Column("record_id", String(36), ForeignKey("region.review_records.id"), nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("to_lan", String(2), nullable=False),
    # The flags as they were when decided.
    Column("protected_identity", Boolean, nullable=False),
    Column("blocked", Boolean, nullable=False),
    Column("objection", Boolean, nullable=False),
    # approve | refuse
    Column("outcome", String(8), nullable=False),
    # False for a first approval that waits for a second reviewer (the region's policy).
    Column("final", Boolean, nullable=False),
    # 1, or 2 for the second reviewer's decision.
    Column("step", Integer, nullable=False),
    Column("reason", Text),
    # The reviewer: user id, name, HSA-id, the role decided in, and how they signed in.
    Column("reviewer_user_id", BigInteger),
    Column("reviewer_name", String(200), nullable=False),
    Column("reviewer_hsa_id", String(64)),
    Column("reviewer_role", String(32), nullable=False),
    Column("auth_method", String(32), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    # A bulk decision's batch and its size; None for an individual decision.
    Column("batch_id", String(36)),
    Column("batch_size", Integer),
    Column("request_id", String(64)),
    UniqueConstraint(
        "id",
        "record_id",
        "to_lan",
        "content_sha256",
        "outcome",
        "final",
        name="uq_decisions_authority",
    ),
    UniqueConstraint("record_id", "step", name="uq_decisions_step"),
    CheckConstraint("outcome IN ('approve', 'refuse')", name="ck_decisions_outcome"),
    # Step 1 may wait for a second reviewer (an approval that is not final); step 2 ends it; a
    # refusal always ends the review.
    CheckConstraint(
        "step IN (1, 2) AND (final OR (step = 1 AND outcome = 'approve'))",
        name="ck_decisions_step",
    ),
    CheckConstraint(
        "(batch_id IS NULL AND batch_size IS NULL)"
        " OR (batch_id IS NOT NULL AND batch_size IS NOT NULL AND batch_size >= 1)",
        name="ck_decisions_batch",
    ),
    CheckConstraint(
        "reviewer_name <> '' AND reviewer_role <> '' AND auth_method <> ''",
        name="ck_decisions_reviewer",
    ),
    # Flagged records are decided one by one, with a reason; so is every refusal.
    CheckConstraint(
        "batch_id IS NULL OR NOT (protected_identity OR blocked OR objection)",
        name="ck_decisions_flagged_not_bulk",
    ),
    CheckConstraint(
        "(outcome = 'approve' AND NOT (protected_identity OR blocked OR objection))"
        " OR (reason IS NOT NULL AND reason <> '')",
        name="ck_decisions_reason",
    ),
    Index("ix_decisions_record", "record_id", "decided_at"),
    # One final decision per record: a refused record can never be approved after all.
    Index(
        "uq_decisions_final",
        "record_id",
        unique=True,
        sqlite_where=text("final = 1"),
        postgresql_where=text("final"),
    ),
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
    # The review record and the final approval this record is sent on; the database checks them
    # against the decision (one foreign key over record, destination, hash, outcome and final)
    # and refuses a record without one. One approval queues one outbox record.
    Column("review_record_id", String(36), ForeignKey("region.review_records.id")),
    Column("decision_id", String(36)),
    Column("decision_sha256", String(64)),
    Column("decision_outcome", String(8)),
    Column("decision_final", Boolean),
    ForeignKeyConstraint(
        [
            "decision_id",
            "review_record_id",
            "to_lan",
            "decision_sha256",
            "decision_outcome",
            "decision_final",
        ],
        [
            "region.decisions.id",
            "region.decisions.record_id",
            "region.decisions.to_lan",
            "region.decisions.content_sha256",
            "region.decisions.outcome",
            "region.decisions.final",
        ],
        name="fk_outbox_decision",
    ),
    # Written so that no NULL can make it pass (a CHECK passes when it is NULL, and a foreign key
    # with a NULL column is not checked): every decision column set, naming a final approval;
    # or, for records queued before the review existed, none set and the record final (never
    # sent again), which keeps them as history.
    CheckConstraint(
        "(decision_id IS NOT NULL AND review_record_id IS NOT NULL"
        " AND decision_sha256 IS NOT NULL AND decision_outcome IS NOT NULL"
        " AND decision_final IS NOT NULL AND decision_outcome = 'approve' AND decision_final)"
        " OR (decision_id IS NULL AND review_record_id IS NULL AND decision_sha256 IS NULL"
        " AND decision_outcome IS NULL AND decision_final IS NULL"
        " AND state IN ('delivered', 'refused', 'failed'))",
        name="ck_outbox_decided",
    ),
    Index("ix_outbox_due", "to_lan", "state", "next_attempt_at"),
    Index("ix_outbox_receipt", "state", "receipt_at"),
    Index("ix_outbox_pnr_hash", "pnr_hash"),
    UniqueConstraint("to_lan", "content_hash", name="uq_outbox_content"),
    UniqueConstraint("decision_id", name="uq_outbox_decision"),
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
