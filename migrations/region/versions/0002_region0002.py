"""Region drops and job runner: intake of extracts, delivery bookkeeping (issue 3)

Revision ID: region0002
Revises: region0001

The retention job empties ``messages.body_enc`` and ``messages.fields_enc`` (sets them NULL) of
messages delivered long ago, so both become nullable. SQLite cannot drop NOT NULL in place;
Alembic's batch mode copies the table there.
"""

import sqlalchemy as sa
from alembic import op

revision = "region0002"
down_revision = "region0001"
branch_labels = None
depends_on = None


def _batch_schema() -> str | None:
    # Alembic's ALTER COLUMN (and, on SQLite, batch mode's rename of the table copy) are not
    # compiled through the connection's schema_translate_map, so give them the real schema:
    # region_<län> on PostgreSQL, none in a region's own SQLite file.
    translate = op.get_bind().get_execution_options().get("schema_translate_map") or {}
    return translate.get("region", "region")  # type: ignore[no-any-return]


def upgrade() -> None:
    op.create_table(
        "extracts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("original_name", sa.String(255), nullable=False),
        sa.Column("archived_name", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("source_mtime", sa.DateTime(timezone=True)),
        sa.Column("sighting_key", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("picked_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True)),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint("archived_name", name="uq_extracts_archived_name"),
        sa.UniqueConstraint("sighting_key", name="uq_extracts_sighting_key"),
        schema="region",
    )
    op.create_index("ix_extracts_state", "extracts", ["state"], schema="region")
    with op.batch_alter_table("messages", schema=_batch_schema()) as batch:
        batch.alter_column("body_enc", existing_type=sa.LargeBinary, nullable=True)
        batch.alter_column("fields_enc", existing_type=sa.LargeBinary, nullable=True)
    # The retention job looks for delivered messages by age.
    op.create_index(
        "ix_messages_delivered", "messages", ["delivery_state", "delivered_at"], schema="region"
    )


def downgrade() -> None:
    op.drop_index("ix_messages_delivered", "messages", schema="region")
    with op.batch_alter_table("messages", schema=_batch_schema()) as batch:
        batch.alter_column("fields_enc", existing_type=sa.LargeBinary, nullable=False)
        batch.alter_column("body_enc", existing_type=sa.LargeBinary, nullable=False)
    op.drop_index("ix_extracts_state", "extracts", schema="region")
    op.drop_table("extracts", schema="region")
