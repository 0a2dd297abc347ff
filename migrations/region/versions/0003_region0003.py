"""Outbox: records to send through NTjP, attempts, final states (issue 4)

Revision ID: region0003
Revises: region0002
"""

import sqlalchemy as sa
from alembic import op

revision = "region0003"
down_revision = "region0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("to_lan", sa.String(2), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.Column("correlation_id", sa.String(64), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("pnr_hash", sa.String(64), nullable=False),
        sa.Column("pnr_enc", sa.LargeBinary, nullable=False),
        sa.Column("request_enc", sa.LargeBinary, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("reference", sa.String(200)),
        sa.Column("check_text", sa.Text),
        sa.Column("result_code", sa.String(5)),
        sa.Column("result_text", sa.Text),
        sa.Column("fault_code", sa.String(32)),
        sa.Column("last_error", sa.Text),
        sa.Column("final_at", sa.DateTime(timezone=True)),
        sa.Column("receipt_name", sa.String(255)),
        sa.Column("receipt_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("to_lan", "content_hash", name="uq_outbox_content"),
        schema="region",
    )
    op.create_index(
        "ix_outbox_due", "outbox", ["to_lan", "state", "next_attempt_at"], schema="region"
    )
    op.create_index("ix_outbox_receipt", "outbox", ["state", "receipt_at"], schema="region")
    op.create_index("ix_outbox_pnr_hash", "outbox", ["pnr_hash"], schema="region")
    op.create_table(
        "outbox_attempts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("outbox_id", sa.String(36), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("correlation_id", sa.String(128)),
        sa.Column("response_enc", sa.LargeBinary),
        sa.Column("detail", sa.Text, nullable=False),
        schema="region",
    )
    op.create_index("ix_outbox_attempts_outbox", "outbox_attempts", ["outbox_id"], schema="region")


def downgrade() -> None:
    op.drop_table("outbox_attempts", schema="region")
    op.drop_table("outbox", schema="region")
