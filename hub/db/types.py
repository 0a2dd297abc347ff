"""Column types shared by the hub's and the regions' tables."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer

# Identity columns: BigInteger on PostgreSQL, INTEGER (the rowid alias) on SQLite, where only an
# INTEGER PRIMARY KEY autoincrements.
BigId = BigInteger().with_variant(Integer(), "sqlite")
