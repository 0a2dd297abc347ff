"""Ended regions: the moment an agreement was ended (issue 17)

An ended region is refused at once in every process, and a region file cannot revive it: the
registry must know that it was ended, apart from the agreement's dates a file may carry.

Revision ID: hub0005
Revises: hub0004
"""

import sqlalchemy as sa
from alembic import op

revision = "hub0005"
down_revision = "hub0004"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    # Alembic's ADD/DROP COLUMN are not compiled through the connection's schema_translate_map:
    # give them the real schema (none on SQLite, where the hub is a file of its own).
    translate = op.get_bind().get_execution_options().get("schema_translate_map") or {}
    return translate.get("hub", "hub")


def upgrade() -> None:
    op.add_column("regions", sa.Column("ended_at", sa.DateTime(timezone=True)), schema=_schema())


def downgrade() -> None:
    with op.batch_alter_table("regions", schema=_schema()) as batch:
        batch.drop_column("ended_at")
