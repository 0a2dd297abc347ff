"""Run the two Alembic environments: the hub schema once, the region schema for every region."""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select, text

from hub.db.engines import Database, region_schema_name
from hub.db.hub_tables import HUB_SCHEMA, regions
from hub.shipped import shipped_dir

log = logging.getLogger(__name__)


def alembic_config(name: str) -> Config:
    """The Alembic configuration of one environment (``hub`` or ``region``)."""
    config = Config()
    config.set_main_option("script_location", str(shipped_dir("migrations") / name))
    return config


def head_revision(name: str) -> str:
    """The newest revision of an environment (``hub`` or ``region``)."""
    head = ScriptDirectory.from_config(alembic_config(name)).get_current_head()
    assert head is not None
    return head


def _run(engine: Engine, name: str, schema: str | None, revision: str) -> None:
    with engine.begin() as connection:
        if schema is not None:
            # The schema name comes from the region registry / a constant, never from a request.
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        config = alembic_config(name)
        config.attributes["connection"] = connection
        config.attributes["version_schema"] = schema
        command.upgrade(config, revision)


def current_revision(engine: Engine, schema: str | None) -> str | None:
    """The revision a database (or one schema of it) is at, or None when never migrated."""
    with engine.connect() as connection:
        opts = {"version_table_schema": schema} if schema else {}
        return MigrationContext.configure(connection, opts=opts).get_current_revision()


def upgrade_hub(db: Database, revision: str = "head") -> None:
    """Migrate the shared hub schema."""
    _run(db.hub, "hub", None if db.is_sqlite else HUB_SCHEMA, revision)


def upgrade_region(db: Database, lan_code: str, revision: str = "head") -> None:
    """Migrate one region's store (its schema, or its SQLite file, made if it has none)."""
    db.ensure_region_store(lan_code)
    schema = None if db.is_sqlite else region_schema_name(lan_code)
    _run(db.region(lan_code), "region", schema, revision)


def upgrade_all(db: Database) -> list[str]:
    """Migrate the hub schema, then every registered region's store; return the län codes done."""
    upgrade_hub(db)
    with db.hub.connect() as connection:
        lan_codes = [row[0] for row in connection.execute(select(regions.c.lan_code))]
    for lan_code in lan_codes:
        if db.ensure_region_store(lan_code):
            # A registered region without its file: deleted, or never restored. Say so: what it
            # held is gone unless restored from a backup (stop, put the file back, start).
            log.warning("region %s had no store: an empty one was created", lan_code)
        upgrade_region(db, lan_code)
    return lan_codes
