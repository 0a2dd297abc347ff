"""Sender state per destination, operator alerts (issue 4)

Revision ID: hub0003
Revises: hub0002
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "hub0003"
down_revision = "hub0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
