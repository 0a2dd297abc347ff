"""Migrations: an empty database, a database at the previous revision, and no model drift."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, insert, select

from hub.context import Hub, build_hub
from hub.db.hub_tables import hub_metadata
from hub.db.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade_all,
    upgrade_hub,
    upgrade_region,
)
from hub.db.region_tables import region_metadata


def _previous(name: str) -> str | None:
    script = ScriptDirectory.from_config(alembic_config(name))
    head = script.get_revision(head_revision(name))
    assert head is not None
    down = head.down_revision
    return down if isinstance(down, str) or down is None else down[0]


def _schemas(hub: Hub, lan: str) -> tuple[str | None, str | None]:
    return (None, None) if hub.db.is_sqlite else ("hub", f"region_{lan}")


def test_empty_database_upgrades_to_head(settings: Any) -> None:
    hub = build_hub(settings)
    try:
        hub_schema, region_schema = _schemas(hub, "14")
        assert current_revision(hub.db.hub, hub_schema) is None
        upgrade_hub(hub.db)
        upgrade_region(hub.db, "14")
        assert current_revision(hub.db.hub, hub_schema) == head_revision("hub")
        assert current_revision(hub.db.region("14"), region_schema) == head_revision("region")
    finally:
        hub.close()


def test_database_at_previous_revision_upgrades_and_keeps_its_data(settings: Any) -> None:
    hub = build_hub(settings)
    try:
        hub_previous, region_previous = _previous("hub"), _previous("region")
        if hub_previous is None or region_previous is None:
            pytest.skip("only one revision so far")
        upgrade_hub(hub.db, hub_previous)
        upgrade_region(hub.db, "14", region_previous)
        now = datetime.now(UTC)
        message_id = str(uuid.uuid4())
        # Rows written with the columns of the first revision, which every later one must keep.
        with hub.db.hub.begin() as connection:
            connection.execute(
                insert(hub_metadata.tables["hub.regions"]).values(
                    lan_code="14",
                    hsa_id="SE2321000131",
                    name="VGR",
                    drop_settings={},
                    environment="SIT",
                    created_at=now,
                    updated_at=now,
                )
            )
        with hub.db.region("14").begin() as connection:
            connection.execute(
                insert(region_metadata.tables["region.messages"]).values(
                    id=message_id,
                    received_at=now,
                    logical_address="14",
                    content_hash="h",
                    pnr_hash="p",
                    pnr_enc=b"x",
                    body_enc=b"x",
                    fields_enc=b"x",
                    kind="move",
                    summary={},
                    result_code="OK",
                    delivery_state="pending",
                    delivery_attempts=0,
                )
            )
        assert upgrade_all(hub.db) == ["14"]
        hub_schema, region_schema = _schemas(hub, "14")
        assert current_revision(hub.db.hub, hub_schema) == head_revision("hub")
        assert current_revision(hub.db.region("14"), region_schema) == head_revision("region")
        with hub.db.region("14").connect() as connection:
            ids = (
                connection.execute(select(region_metadata.tables["region.messages"].c.id))
                .scalars()
                .all()
            )
        assert ids == [message_id]
    finally:
        hub.close()


def test_tables_in_code_match_what_migrations_build(hub: Hub, settings: Any) -> None:
    if hub.db.is_sqlite:
        pytest.skip("schema comparison runs on PostgreSQL, where schemas are real")
    upgrade_region(hub.db, "14")
    # Each store's tables are declared in one module (hub.db.hub_tables, hub.db.region_tables):
    # nothing else needs importing for the comparison to see all of them.
    region_copy = MetaData()
    for table in region_metadata.tables.values():
        table.to_metadata(region_copy, schema="region_14")
    for metadata, schema in ((hub_metadata, "hub"), (region_copy, "region_14")):
        with hub.db.hub.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "include_schemas": True,
                    "include_name": lambda name, kind, _p, s=schema: kind != "schema" or name == s,
                },
            )
            diff = [
                d
                for d in compare_metadata(context, metadata)
                if not (d[0] == "remove_table" and d[1].name == "alembic_version")
            ]
        assert diff == [], f"{schema}: code and migrations differ: {diff}"
