"""Outbox: records to send through NTjP, attempts, final states (issue 4)

Revision ID: region0003
Revises: region0002
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "region0003"
down_revision = "region0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
