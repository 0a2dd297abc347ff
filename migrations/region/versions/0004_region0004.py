"""Messages stay in their row: no TOAST for rows up to a page (PostgreSQL only)

Revision ID: region0004
Revises: region0003

A received message's sealed body and fields are ciphertext, which no compressor can shrink.
PostgreSQL moves a row over 2 kB into its TOAST table after first trying to compress it: work
that is wasted on ciphertext, and a second heap and index write per message. Rows up to a page
(8160 bytes) now stay in the table; larger ones are still moved out as before. SQLite has no
TOAST, so nothing changes there.
"""

from alembic import op

revision = "region0004"
down_revision = "region0003"
branch_labels = None
depends_on = None


def _schema() -> str:
    # Raw SQL is not compiled through the connection's schema_translate_map: name region_<län>.
    translate = op.get_bind().get_execution_options().get("schema_translate_map") or {}
    return translate.get("region", "region")  # type: ignore[no-any-return]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'ALTER TABLE "{_schema()}".messages SET (toast_tuple_target = 8160)')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'ALTER TABLE "{_schema()}".messages RESET (toast_tuple_target)')
