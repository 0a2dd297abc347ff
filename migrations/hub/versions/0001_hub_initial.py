"""The shared hub schema: regions with their agreements, wrapped region keys, operator audit.

Revision ID: hub0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "hub0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "regions",
        sa.Column("lan_code", sa.String(2), primary_key=True),
        sa.Column("hsa_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("organisation_number", sa.String(20)),
        sa.Column("drop_url", sa.String(500)),
        sa.Column("drop_settings", sa.JSON, nullable=False),
        sa.Column("agreement_signed", sa.Date),
        sa.Column("platform_confirmed", sa.Date),
        sa.Column("environment", sa.String(8), nullable=False),
        sa.Column("active_from", sa.Date),
        sa.Column("active_to", sa.Date),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema="hub",
    )
    op.create_table(
        "region_keys",
        sa.Column("lan_code", sa.String(2), primary_key=True),
        sa.Column("wrapped_key", sa.LargeBinary),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True)),
        schema="hub",
    )
    op.create_table(
        "operator_audit",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("lan_code", sa.String(2)),
        sa.Column("detail", sa.Text, nullable=False),
        schema="hub",
    )


def downgrade() -> None:
    op.drop_table("operator_audit", schema="hub")
    op.drop_table("region_keys", schema="hub")
    op.drop_table("regions", schema="hub")
