"""Alembic environment of the shared hub schema; the connection comes from hub.db.migrate."""

from alembic import context

from hub.db.hub_tables import hub_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=hub_metadata,
    version_table_schema=context.config.attributes.get("version_schema"),
)
with context.begin_transaction():
    context.run_migrations()
