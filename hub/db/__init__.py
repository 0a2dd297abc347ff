"""The hub's databases: engines for the hub schema and each region's store, migrations, claims.

See :mod:`hub.db.engines` for how stores are laid out (PostgreSQL schemas, or one SQLite file
per region), :mod:`hub.db.hub_tables` and :mod:`hub.db.region_tables` for what they hold.
"""

from hub.db.engines import Database, StoreMissing, read_once_more_if_lost, region_schema_name

__all__ = ["Database", "StoreMissing", "read_once_more_if_lost", "region_schema_name"]
