"""Tables of the job runner and the drops, declared on the shared metadata objects.

Hub schema (one row per region or worker, never personal data):

* ``drop_state`` — how each region's drop is doing: reachable or not, the last success, the last
  error and whether it is permanent, the capped exponential backoff (``next_attempt_at``) and a
  hash of the drop configuration the failure was seen with (a changed configuration is tried at
  once instead of waiting out the backoff).
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
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from hub.tables import hub_metadata, region_metadata

drop_state = Table(
    "drop_state",
    hub_metadata,
    Column("lan_code", String(2), primary_key=True),
    # None until the first attempt: "unknown" is not the same as "down".
    Column("reachable", Boolean),
    Column("last_check_at", DateTime(timezone=True)),
    Column("last_success_at", DateTime(timezone=True)),
    Column("last_failure_at", DateTime(timezone=True)),
    Column("failing_since", DateTime(timezone=True)),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("error_permanent", Boolean, nullable=False, default=False),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("config_hash", String(64)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

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
