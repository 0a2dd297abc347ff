"""Operator alerts of the senders (issue 4)

Revision ID: hub0003
Revises: hub0002
"""

import sqlalchemy as sa
from alembic import op

revision = "hub0003"
down_revision = "hub0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lan_code", sa.String(2), nullable=False),
        sa.Column("to_lan", sa.String(2)),
        sa.Column("record_id", sa.String(36)),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True)),
        sa.Column("acknowledged_by", sa.String(200)),
        schema="hub",
    )
    op.create_index("ix_alerts_open", "alerts", ["acknowledged_at", "at"], schema="hub")


def downgrade() -> None:
    op.drop_table("alerts", schema="hub")
