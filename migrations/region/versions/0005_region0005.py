"""Intake, the review queue, append-only decisions, outbox records tied to their approval (#18)

Revision ID: region0005
Revises: region0004

The outbox gains the decision it is sent on: (decision_id, review_record_id, to_lan,
decision_sha256, decision_outcome, decision_final) references decisions(id, record_id, to_lan,
content_sha256, outcome, final), one approval queues one outbox record, and a check (written so
that no NULL lets it pass) refuses a row that could be sent without a final approval. Records
queued before the review existed have no decision: they keep their history if final, and a
queued or sending one is moved to failed with a text saying why, since no decision of anyone
covers it.

Decisions are append-only, a record has at most one per step and one final decision, and a
decision must name its record's content hash, destination and flags, be taken on a record
waiting for it, and (a second approval) come from another person than the first. A review record
is stored pending, keeps its content, and moves forward only, to approved, refused or second
review only with the decision that says so. An outbox record's request, destination and
approval never change. Triggers enforce it, on SQLite and on PostgreSQL.

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

# Columns of a review record fixed once stored: its content and everything said about it at
# intake. What moves is its state and what a decision or a receipt adds.
_RECORD_CONTENT = (
    "id",
    "created_at",
    "intake_id",
    "line",
    "reference",
    "kind",
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
    "summary",
    "check_text",
)
# Columns of an outbox record that say what is sent where on whose approval: fixed once stored.
_OUTBOX_FIXED = (
    "request_enc",
    "to_lan",
    "review_record_id",
    "decision_id",
    "decision_sha256",
    "decision_outcome",
    "decision_final",
)

# Trigger conditions, the same text on SQLite and PostgreSQL (``{false}`` differs).
_DECISION_MATCHES_RECORD = (
    "NOT EXISTS (SELECT 1 FROM {t}review_records r WHERE r.id = NEW.record_id"
    " AND r.content_sha256 = NEW.content_sha256 AND r.to_lan = NEW.to_lan"
    " AND r.protected_identity = NEW.protected_identity AND r.blocked = NEW.blocked"
    " AND r.objection = NEW.objection)"
)
_DECISION_ON_WAITING = (
    "NOT EXISTS (SELECT 1 FROM {t}review_records r WHERE r.id = NEW.record_id"
    " AND ((NEW.step = 1 AND r.state = 'pending')"
    " OR (NEW.step = 2 AND r.state = 'second_review')))"
)
# The same person: the same user id, or the same HSA-id (a person's own), or with neither known
# on both sides the same name.
_SECOND_BY_ANOTHER = (
    "NEW.step = 2 AND NEW.outcome = 'approve' AND NOT EXISTS (SELECT 1 FROM {t}decisions d"
    " WHERE d.record_id = NEW.record_id AND d.step = 1 AND d.outcome = 'approve' AND NOT d.final"
    " AND NOT (COALESCE(d.reviewer_user_id = NEW.reviewer_user_id, {false})"
    " OR COALESCE(d.reviewer_hsa_id = NEW.reviewer_hsa_id, {false})"
    " OR (d.reviewer_user_id IS NULL AND NEW.reviewer_user_id IS NULL"
    " AND d.reviewer_hsa_id IS NULL AND NEW.reviewer_hsa_id IS NULL"
    " AND d.reviewer_name = NEW.reviewer_name)))"
)
_STATE_BACKWARDS = (
    "OLD.state NOT IN ('pending', 'second_review') OR NEW.state = 'pending'"
    " OR NEW.state NOT IN ('second_review', 'approved', 'refused', 'superseded')"
)
_STATE_WITHOUT_DECISION = (
    "(NEW.state = 'approved' AND NOT EXISTS (SELECT 1 FROM {t}decisions d"
    " WHERE d.record_id = NEW.id AND d.final AND d.outcome = 'approve'))"
    " OR (NEW.state = 'refused' AND NOT EXISTS (SELECT 1 FROM {t}decisions d"
    " WHERE d.record_id = NEW.id AND d.final AND d.outcome = 'refuse'))"
    " OR (NEW.state = 'second_review' AND NOT EXISTS (SELECT 1 FROM {t}decisions d"
    " WHERE d.record_id = NEW.id AND NOT d.final AND d.outcome = 'approve'))"
    " OR (NEW.state = 'superseded' AND NEW.superseded_by IS NULL)"
)

# (condition, message) of the checks on a new decision and on a review record's state.
_DECISION_CHECKS = (
    (_DECISION_MATCHES_RECORD, "a decision names its record''s content, destination and flags"),
    (_DECISION_ON_WAITING, "a decision is taken on a record waiting for that decision"),
    (_SECOND_BY_ANOTHER, "a second approval comes from another reviewer than the first"),
)
_STATE_CHECKS = (
    (_STATE_BACKWARDS, "a review record''s state only moves forward"),
    (
        _STATE_WITHOUT_DECISION,
        "a review record is approved, refused or sent to second review only by a decision",
    ),
)


def _schema() -> str | None:
    # Raw SQL and batch mode are not compiled through the schema_translate_map: the real schema
    # is region_<län> on PostgreSQL, none in a region's own SQLite file.
    translate = op.get_bind().get_execution_options().get("schema_translate_map") or {}
    return translate.get("region", "region")  # type: ignore[no-any-return]


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _refuse(name: str, table: str, when: str, message: str) -> None:
    """A trigger that refuses a change to ``table`` (``when``: the trigger event)."""
    schema = _schema()
    if _sqlite():
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {when} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
        return
    op.execute(
        f'CREATE TRIGGER {name} BEFORE {when} ON "{schema}".{table} '
        f"FOR EACH ROW EXECUTE FUNCTION \"{schema}\".agenthub_refuse_change('{message}')"
    )


def _checked(name: str, table: str, when: str, checks: tuple[tuple[str, str], ...]) -> None:
    """Triggers that refuse a row of ``table`` for which a condition of ``checks`` holds.

    SQLite: one trigger per condition (``WHEN`` … ``RAISE``). PostgreSQL: one function of
    ``IF`` … ``RAISE`` (SQLSTATE 23000, an IntegrityError to drivers) and one trigger.
    """
    schema = _schema()
    state_only = when.startswith("UPDATE")
    if _sqlite():
        for number, (condition, message) in enumerate(checks, 1):
            test = condition.format(t="", false="0")
            if state_only:
                test = f"NEW.state IS NOT OLD.state AND ({test})"
            op.execute(
                f"CREATE TRIGGER {name}_{number} BEFORE {when} ON {table} FOR EACH ROW "
                f"WHEN {test} BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
        return
    prefix = f'"{schema}".'
    body = " ".join(
        f"IF {condition.format(t=prefix, false='FALSE')} THEN "
        f"RAISE EXCEPTION '{message}' USING ERRCODE = '23000'; END IF;"
        for condition, message in checks
    )
    op.execute(
        f'CREATE OR REPLACE FUNCTION "{schema}".agenthub_{name}() RETURNS trigger '
        f"LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NEW; END $$"
    )
    guard = " WHEN (NEW.state IS DISTINCT FROM OLD.state)" if state_only else ""
    op.execute(
        f'CREATE TRIGGER {name} BEFORE {when} ON "{schema}".{table} FOR EACH ROW{guard} '
        f'EXECUTE FUNCTION "{schema}".agenthub_{name}()'
    )


def _triggers() -> None:
    schema = _schema()
    if not _sqlite():
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
    _checked("decisions_valid", "decisions", "INSERT", _DECISION_CHECKS)
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
    if _sqlite():
        op.execute(
            "CREATE TRIGGER review_records_born_pending BEFORE INSERT ON review_records "
            "FOR EACH ROW WHEN NEW.state IS NOT 'pending' "
            "BEGIN SELECT RAISE(ABORT, 'a review record is stored pending'); END"
        )
    else:
        op.execute(
            f'CREATE TRIGGER review_records_born_pending BEFORE INSERT ON "{schema}".review_records '
            "FOR EACH ROW WHEN (NEW.state IS DISTINCT FROM 'pending') "
            f"EXECUTE FUNCTION \"{schema}\".agenthub_refuse_change('a review record is stored pending')"
        )
    _checked("review_records_state", "review_records", "UPDATE OF state", _STATE_CHECKS)
    _refuse(
        "outbox_approval_fixed",
        "outbox",
        f"UPDATE OF {', '.join(_OUTBOX_FIXED)}",
        "an outbox record keeps the request, destination and approval it was queued with",
    )
    if not _sqlite():
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
    op.create_index(
        "ix_review_records_queue_flagged",
        "review_records",
        ["flagged", "state", "created_at", "id"],
        schema="region",
        sqlite_where=sa.text("flagged = 1"),
        postgresql_where=sa.text("flagged"),
    )
    op.create_index(
        "ix_review_records_superseded_by",
        "review_records",
        ["superseded_by"],
        schema="region",
        sqlite_where=sa.text("superseded_by IS NOT NULL"),
        postgresql_where=sa.text("superseded_by IS NOT NULL"),
    )
    for name, columns in (
        ("ix_review_records_queue", ["state", "created_at", "id"]),
        ("ix_review_records_queue_to", ["state", "to_lan", "created_at", "id"]),
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
            "id",
            "record_id",
            "to_lan",
            "content_sha256",
            "outcome",
            "final",
            name="uq_decisions_authority",
        ),
        sa.UniqueConstraint("record_id", "step", name="uq_decisions_step"),
        sa.CheckConstraint("outcome IN ('approve', 'refuse')", name="ck_decisions_outcome"),
        sa.CheckConstraint(
            "step IN (1, 2) AND (final OR (step = 1 AND outcome = 'approve'))",
            name="ck_decisions_step",
        ),
        sa.CheckConstraint(
            "(batch_id IS NULL AND batch_size IS NULL)"
            " OR (batch_id IS NOT NULL AND batch_size IS NOT NULL AND batch_size >= 1)",
            name="ck_decisions_batch",
        ),
        sa.CheckConstraint(
            "reviewer_name <> '' AND reviewer_role <> '' AND auth_method <> ''",
            name="ck_decisions_reviewer",
        ),
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
    op.create_index(
        "uq_decisions_final",
        "decisions",
        ["record_id"],
        unique=True,
        schema="region",
        sqlite_where=sa.text("final = 1"),
        postgresql_where=sa.text("final"),
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
            [
                "decision_id",
                "review_record_id",
                "to_lan",
                "decision_sha256",
                "decision_outcome",
                "decision_final",
            ],
            ["id", "record_id", "to_lan", "content_sha256", "outcome", "final"],
            referent_schema=_schema(),
        )
        # No NULL may make it pass: a CHECK passes when NULL, a foreign key with a NULL column
        # is not checked.
        batch.create_check_constraint(
            "ck_outbox_decided",
            "(decision_id IS NOT NULL AND review_record_id IS NOT NULL"
            " AND decision_sha256 IS NOT NULL AND decision_outcome IS NOT NULL"
            " AND decision_final IS NOT NULL AND decision_outcome = 'approve' AND decision_final)"
            " OR (decision_id IS NULL AND review_record_id IS NULL AND decision_sha256 IS NULL"
            " AND decision_outcome IS NULL AND decision_final IS NULL"
            " AND state IN ('delivered', 'refused', 'failed'))",
        )
        batch.create_unique_constraint("uq_outbox_decision", ["decision_id"])
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
    triggers = [
        ("outbox_approval_fixed", "outbox"),
        ("review_records_no_delete", "review_records"),
        ("review_records_content_fixed", "review_records"),
        ("review_records_born_pending", "review_records"),
        ("decisions_no_delete", "decisions"),
        ("decisions_no_update", "decisions"),
    ]
    checked = (
        ("decisions_valid", "decisions", len(_DECISION_CHECKS)),
        ("review_records_state", "review_records", len(_STATE_CHECKS)),
    )
    for name, table, count in checked:
        if dialect == "sqlite":
            triggers += [(f"{name}_{number}", table) for number in range(1, count + 1)]
        else:
            triggers.append((name, table))
    for trigger, table in triggers:
        if dialect == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {_qualified(table)}")
    if dialect == "postgresql":
        for table in ("decisions", "review_records"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {_qualified(table)}")
        for name, _table, _count in checked:
            op.execute(f'DROP FUNCTION IF EXISTS "{_schema()}".agenthub_{name}()')
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
        batch.drop_constraint("uq_outbox_decision", type_="unique")
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
