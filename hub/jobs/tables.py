"""Tables of the job runner and the drops, declared on the shared metadata objects.

Hub schema (never personal data; ``drop_state`` lives in :mod:`hub.drops.state`):

* ``worker_heartbeats`` — which ``agenthub worker`` processes are alive, for ``drops status``.

Region schema:

* ``extracts`` — every extract file picked up from the region's ``extracts/`` folder: its
  checksum and where in ``extracts/.archive/`` it now lies. ``state`` is ``claimed`` while a
  worker moves it, ``archived`` when it waits for the intake service (a later issue), or
  ``vanished`` when the region removed the file before the hub could archive it.

Migrations: ``migrations/hub/versions/0002_hub0002.py`` and
``migrations/region/versions/0002_region0002.py``; keep them in step with this module.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from hub.tables import hub_metadata, region_metadata

worker_heartbeats = Table(
    "worker_heartbeats",
    hub_metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

extracts = Table(
    "extracts",
    region_metadata,
    Column("id", String(36), primary_key=True),
    Column("original_name", String(255), nullable=False),
    Column("archived_name", String(255), nullable=False, unique=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("source_mtime", DateTime(timezone=True)),
    # Hash of (name, size, mtime, sha256): two workers that see the same file insert the same
    # key, so only one of them gets to archive it.
    Column("sighting_key", String(64), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("picked_up_at", DateTime(timezone=True), nullable=False),
    Column("archived_at", DateTime(timezone=True)),
    Column("claimed_by", String(64)),
    Column("claimed_until", DateTime(timezone=True)),
    Column("error", Text),
    Index("ix_extracts_state", "state"),
)
