"""Drop state per region, job bookkeeping (issue 3)

Revision ID: hub0002
Revises: hub0001
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "hub0002"
down_revision = "hub0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
