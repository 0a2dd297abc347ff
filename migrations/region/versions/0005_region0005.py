"""Intake, the review queue, append-only decisions, outbox records tied to their approval (#18)

Revision ID: region0005
Revises: region0004

The outbox gains the decision it is sent on: (decision_id, decision_sha256, decision_outcome,
decision_final) references decisions(id, content_sha256, outcome, final), and a check refuses a
row that could be sent without a final approval. Records queued before the review existed have
no decision: they keep their history if final, and a queued or sending one is moved to failed
with a text saying why, since no decision of anyone covers it.

Decisions are append-only, and a review record's content and an outbox record's request never
change: triggers refuse it, on SQLite and on PostgreSQL.

The access log gains who (user id, name, HSA-id, role), which woman (keyed hash, masked
personnummer), the resource, the outcome and the request id.
"""

import sqlalchemy as sa
from alembic import op

revision = "region0005"
down_revision = "region0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Columns of a review record that are its content: fixed once stored.
_RECORD_CONTENT = (
    "content_sha256",
    "content_key",
    "content_enc",
    "pnr_hash",
    "pnr_enc",
    "to_lan",
    "protected_identity",
    "blocked",
    "objection",
    "flagged",
)
# Columns of an outbox record that say what is sent on whose approval: fixed once stored.
_OUTBOX_FIXED = (
    "request_enc",
    "review_record_id",
    "decision_id",
    "decision_sha256",
    "decision_outcome",
    "decision_final",
)


def _schema() -> str | None:
    # Raw SQL and batch mode are not compiled through the schema_translate_map: the real schema
    # is region_<län> on PostgreSQL, none in a region's own SQLite file.
    translate = op.get_bind().get_execution_options().get("schema_translate_map") or {}
    return translate.get("region", "region")  # type: ignore[no-any-return]


def _refuse(name: str, table: str, when: str, message: str) -> None:
    """A trigger that refuses a change to ``table`` (``when``: the trigger event)."""
    schema = _schema()
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {when} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
        return
    op.execute(
        f'CREATE TRIGGER {name} BEFORE {when} ON "{schema}".{table} '
        f"FOR EACH ROW EXECUTE FUNCTION \"{schema}\".agenthub_refuse_change('{message}')"
    )


def _triggers() -> None:
    schema = _schema()
    if op.get_bind().dialect.name == "postgresql":
        # In the region's own schema, so a backup of one schema (pg_dump -n) restores whole.
        # SQLSTATE 23000 (integrity_constraint_violation): drivers report an IntegrityError.
        op.execute(
            f'CREATE OR REPLACE FUNCTION "{schema}".agenthub_refuse_change() RETURNS trigger '
            "LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = '23000'; "
            "END $$"
        )
    _refuse("decisions_no_update", "decisions", "UPDATE", "decisions are append-only")
    _refuse("decisions_no_delete", "decisions", "DELETE", "decisions are append-only")
    _refuse(
        "review_records_content_fixed",
        "review_records",
        f"UPDATE OF {', '.join(_RECORD_CONTENT)}",
        "a review record keeps the content it was stored with",
    )
    _refuse(
        "review_records_no_delete",
        "review_records",
        "DELETE",
        "review records are never deleted",
    )
    _refuse(
        "outbox_approval_fixed",
        "outbox",
        f"UPDATE OF {', '.join(_OUTBOX_FIXED)}",
        "an outbox record keeps the request and approval it was queued with",
    )
    if op.get_bind().dialect.name == "postgresql":
        # Row triggers do not see TRUNCATE.
        for table in ("decisions", "review_records"):
            op.execute(
                f'CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON "{schema}".{table} '
                f"FOR EACH STATEMENT EXECUTE FUNCTION "
                f"\"{schema}\".agenthub_refuse_change('{table} are never emptied')"
            )


def upgrade() -> None:
    op.create_table(
        "intakes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("user_id", sa.BigInteger),
        sa.Column("original_name", sa.String(255), nullable=False),
        sa.Column("extract_id", sa.String(36)),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("lines_done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_read", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("queued", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("own_region", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duplicates", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("superseded", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("report_name", sa.String(255)),
        sa.Column("error", sa.Text),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("extract_id", name="uq_intakes_extract_id"),
        schema="region",
    )
    op.create_index("ix_intakes_state", "intakes", ["state", "created_at"], schema="region")
    op.create_table(
        "intake_chunks",
        sa.Column(
            "intake_id",
            sa.String(36),
            sa.ForeignKey("region.intakes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("data_enc", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("intake_id", "seq"),
        schema="region",
    )
    op.create_table(
        "intake_rejections",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "intake_id",
            sa.String(36),
            sa.ForeignKey("region.intakes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("line", sa.BigInteger, nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        schema="region",
    )
    op.create_index(
        "ix_intake_rejections_intake",
        "intake_rejections",
        ["intake_id", "line"],
        schema="region",
    )
    op.create_table(
        "review_records",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("intake_id", sa.String(36), sa.ForeignKey("region.intakes.id"), nullable=False),
        sa.Column("line", sa.BigInteger, nullable=False),
        sa.Column("reference", sa.String(200)),
        sa.Column("to_lan", sa.String(2), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("protected_identity", sa.Boolean, nullable=False),
        sa.Column("blocked", sa.Boolean, nullable=False),
        sa.Column("objection", sa.Boolean, nullable=False),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("content_key", sa.String(64), nullable=False),
        sa.Column("pnr_hash", sa.String(64), nullable=False),
        sa.Column("pnr_enc", sa.LargeBinary, nullable=False),
        sa.Column("content_enc", sa.LargeBinary, nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("check_text", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("superseded_by", sa.String(36)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("outbox_id", sa.String(36)),
        sa.Column("receipt_name", sa.String(255)),
        sa.Column("receipt_at", sa.DateTime(timezone=True)),
        schema="region",
    )
    for name, columns in (
        ("ix_review_records_queue", ["state", "created_at", "id"]),
        ("ix_review_records_intake", ["intake_id", "line"]),
        ("ix_review_records_pnr_hash", ["pnr_hash"]),
        ("ix_review_records_content_key", ["content_key"]),
        ("ix_review_records_receipt", ["state", "receipt_at"]),
    ):
        op.create_index(name, "review_records", columns, schema="region")
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "record_id", sa.String(36), sa.ForeignKey("region.review_records.id"), nullable=False
        ),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("to_lan", sa.String(2), nullable=False),
        sa.Column("protected_identity", sa.Boolean, nullable=False),
        sa.Column("blocked", sa.Boolean, nullable=False),
        sa.Column("objection", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("final", sa.Boolean, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("reviewer_user_id", sa.BigInteger),
        sa.Column("reviewer_name", sa.String(200), nullable=False),
        sa.Column("reviewer_hsa_id", sa.String(64)),
        sa.Column("reviewer_role", sa.String(32), nullable=False),
        sa.Column("auth_method", sa.String(32), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch_id", sa.String(36)),
        sa.Column("batch_size", sa.Integer),
        sa.Column("request_id", sa.String(64)),
        sa.UniqueConstraint(
            "id", "content_sha256", "outcome", "final", name="uq_decisions_authority"
        ),
        sa.CheckConstraint("outcome IN ('approve', 'refuse')", name="ck_decisions_outcome"),
        sa.CheckConstraint(
            "batch_id IS NULL OR NOT (protected_identity OR blocked OR objection)",
            name="ck_decisions_flagged_not_bulk",
        ),
        sa.CheckConstraint(
            "(outcome = 'approve' AND NOT (protected_identity OR blocked OR objection))"
            " OR (reason IS NOT NULL AND reason <> '')",
            name="ck_decisions_reason",
        ),
        schema="region",
    )
    op.create_index(
        "ix_decisions_record", "decisions", ["record_id", "decided_at"], schema="region"
    )
    # Queued before the review existed: no decision covers these, so they are never sent.
    op.execute(
        f"UPDATE {_qualified('outbox')} SET state = 'failed', final_at = CURRENT_TIMESTAMP, "
        "fault_code = 'NO-DECISION', claimed_by = NULL, claimed_until = NULL, "
        "last_error = 'queued before the manual secrecy review existed: put the record "
        "through the review to send it' WHERE state NOT IN ('delivered', 'refused', 'failed')"
    )
    with op.batch_alter_table("outbox", schema=_schema()) as batch:
        batch.add_column(sa.Column("review_record_id", sa.String(36)))
        batch.add_column(sa.Column("decision_id", sa.String(36)))
        batch.add_column(sa.Column("decision_sha256", sa.String(64)))
        batch.add_column(sa.Column("decision_outcome", sa.String(8)))
        batch.add_column(sa.Column("decision_final", sa.Boolean))
        batch.create_foreign_key(
            "fk_outbox_review_record",
            "review_records",
            ["review_record_id"],
            ["id"],
            referent_schema=_schema(),
        )
        batch.create_foreign_key(
            "fk_outbox_decision",
            "decisions",
            ["decision_id", "decision_sha256", "decision_outcome", "decision_final"],
            ["id", "content_sha256", "outcome", "final"],
            referent_schema=_schema(),
        )
        batch.create_check_constraint(
            "ck_outbox_decided",
            "(decision_id IS NOT NULL AND decision_outcome = 'approve' AND decision_final)"
            " OR (decision_id IS NULL AND state IN ('delivered', 'refused', 'failed'))",
        )
    with op.batch_alter_table("access_log", schema=_schema()) as batch:
        batch.add_column(sa.Column("user_id", sa.BigInteger))
        batch.add_column(sa.Column("actor_name", sa.String(200)))
        batch.add_column(sa.Column("hsa_id", sa.String(64)))
        batch.add_column(sa.Column("role", sa.String(64)))
        batch.add_column(sa.Column("resource", sa.String(200)))
        batch.add_column(sa.Column("pnr_hash", sa.String(64)))
        batch.add_column(sa.Column("masked_pnr", sa.String(16)))
        batch.add_column(
            sa.Column("outcome", sa.String(16), nullable=False, server_default="ok")
        )
        batch.add_column(sa.Column("request_id", sa.String(64)))
    op.create_index("ix_access_log_at", "access_log", ["at"], schema="region")
    op.create_index("ix_access_log_pnr_hash", "access_log", ["pnr_hash"], schema="region")
    _triggers()


def _qualified(table: str) -> str:
    schema = _schema()
    return f'"{schema}".{table}' if schema else table


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for trigger, table in (
        ("outbox_approval_fixed", "outbox"),
        ("review_records_no_delete", "review_records"),
        ("review_records_content_fixed", "review_records"),
        ("decisions_no_delete", "decisions"),
        ("decisions_no_update", "decisions"),
    ):
        if dialect == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {_qualified(table)}")
    if dialect == "postgresql":
        for table in ("decisions", "review_records"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {_qualified(table)}")
    op.drop_index("ix_access_log_pnr_hash", "access_log", schema="region")
    op.drop_index("ix_access_log_at", "access_log", schema="region")
    with op.batch_alter_table("access_log", schema=_schema()) as batch:
        for column in (
            "request_id",
            "outcome",
            "masked_pnr",
            "pnr_hash",
            "resource",
            "role",
            "hsa_id",
            "actor_name",
            "user_id",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("outbox", schema=_schema()) as batch:
        batch.drop_constraint("ck_outbox_decided", type_="check")
        batch.drop_constraint("fk_outbox_decision", type_="foreignkey")
        batch.drop_constraint("fk_outbox_review_record", type_="foreignkey")
        for column in (
            "decision_final",
            "decision_outcome",
            "decision_sha256",
            "decision_id",
            "review_record_id",
        ):
            batch.drop_column(column)
    op.drop_table("decisions", schema="region")
    op.drop_table("review_records", schema="region")
    op.drop_table("intake_rejections", schema="region")
    op.drop_table("intake_chunks", schema="region")
    op.drop_table("intakes", schema="region")
    if dialect == "postgresql":
        op.execute(f'DROP FUNCTION IF EXISTS "{_schema()}".agenthub_refuse_change()')
