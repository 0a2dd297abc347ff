"""Region drops and job runner: intake of extracts, delivery bookkeeping (issue 3)

Revision ID: region0002
Revises: region0001
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "region0002"
down_revision = "region0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
