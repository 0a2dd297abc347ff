"""Alembic environment of the per-region schema; the connection comes from hub.db.migrate."""

from alembic import context

from hub.db.region_tables import region_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=region_metadata,
    version_table_schema=context.config.attributes.get("version_schema"),
)
with context.begin_transaction():
    context.run_migrations()
