"""A region's store: received messages (encrypted with the region's key) and its access log.

Revision ID: region0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "region0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("logical_address", sa.String(64), nullable=False),
        sa.Column("sender_hsaid", sa.String(64)),
        sa.Column("original_consumer_hsaid", sa.String(64)),
        sa.Column("correlation_id", sa.String(128)),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("pnr_hash", sa.String(64), nullable=False),
        sa.Column("pnr_enc", sa.LargeBinary, nullable=False),
        sa.Column("body_enc", sa.LargeBinary, nullable=False),
        sa.Column("fields_enc", sa.LargeBinary, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("result_code", sa.String(5), nullable=False),
        sa.Column("result_text", sa.Text),
        sa.Column("delivery_state", sa.String(12), nullable=False),
        sa.Column("delivery_attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("delivery_error", sa.Text),
        sa.Column("delivered_name", sa.String(255)),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("content_hash", name="uq_messages_content_hash"),
        schema="region",
    )
    op.create_index("ix_messages_pnr_hash", "messages", ["pnr_hash"], schema="region")
    op.create_index(
        "ix_messages_delivery", "messages", ["delivery_state", "next_attempt_at"], schema="region"
    )
    op.create_table(
        "access_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("message_id", sa.String(36)),
        sa.Column("detail", sa.Text, nullable=False),
        schema="region",
    )


def downgrade() -> None:
    op.drop_table("access_log", schema="region")
    op.drop_table("messages", schema="region")
