"""Claiming work rows so that two workers (or two hub nodes) never do the same row twice.

A *claimable* table has a primary key ``id`` and the columns ``claimed_by`` (text) and
``claimed_until`` (timestamp). A claim is one conditional UPDATE that takes up to ``limit`` ready
rows whose claim is free or expired and stamps them with the worker's id and a lease::

    WITH claimable AS MATERIALIZED (
        SELECT id FROM t
        WHERE <ready> AND (claimed_until IS NULL OR claimed_until < :now)
        ORDER BY <order> LIMIT :n
        FOR UPDATE SKIP LOCKED)                   -- PostgreSQL only
    UPDATE t SET claimed_by = :me, claimed_until = :now + :lease
    WHERE id IN (SELECT id FROM claimable) AND <ready> AND <free>
    RETURNING *

PostgreSQL: ``SKIP LOCKED`` lets concurrent workers take disjoint batches without waiting on
each other. SQLite: an UPDATE takes the database's write lock before it reads, so the statement
is atomic by itself — provided it is the *first* statement of its transaction (a transaction that
read first holds an older snapshot and could not upgrade). :func:`claim` therefore opens its own
transaction; do not call it inside one.

A lease, not a lock: if a worker dies its rows become claimable again after ``lease``. Work that
finishes must be recorded with a condition that still holds if the lease expired meanwhile (e.g.
``WHERE id = :id AND delivery_state = 'pending'``), so a late finisher and its successor do not
undo each other; what they did outside the database must be idempotent (the drops refuse to
write a name twice).

Used by delivery (``messages``) and the outbox (:mod:`hub.outbound.queue`), which also counts
an attempt and moves the record to ``sending`` in the same statement::

    statement = claim_statement(table, ready=..., order_by=[...], values={...}, returning=[...])
    claim_with(engine, statement, worker_id, limit=n, lease=..., now=...) -> list[Row]
    claim(engine, table, worker_id, *, ready, order_by, limit, lease, now=None) -> list[Row]
    release(engine, table, ids, worker_id) -> int
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    Column,
    ColumnElement,
    DateTime,
    Engine,
    Integer,
    Row,
    Table,
    Update,
    bindparam,
    or_,
    select,
    update,
)

from hub.clock import as_utc, utcnow

#: ``ready`` of a claim: the condition a row must meet, given the claim's ``now`` parameter.
Ready = Callable[[BindParameter[datetime]], ColumnElement[bool]]


def claim_statement(
    table: Table,
    *,
    ready: Ready,
    order_by: Sequence[Column[Any]],
    postgresql: bool,
    values: Mapping[str, Any] | None = None,
    returning: Sequence[Column[Any]] | None = None,
) -> Update:
    """The claim UPDATE of ``table``, with bind parameters ``now``, ``limit``, ``worker`` and
    ``until`` (and whatever ``ready`` adds): build it once, run it with :func:`claim_with`.

    ``values`` are further columns set in the same statement (the outbox counts an attempt);
    ``returning`` the columns handed back (default: all).
    """
    now = bindparam("now", type_=DateTime(timezone=True))
    condition = ready(now)
    free = or_(table.c.claimed_until.is_(None), table.c.claimed_until < now)
    candidates = (
        select(table.c.id)
        .where(condition, free)
        .order_by(*order_by)
        .limit(bindparam("limit", type_=Integer))
    )
    if postgresql:
        candidates = candidates.with_for_update(skip_locked=True)
    # A materialised CTE, not "id IN (subquery)": PostgreSQL may rescan an IN subquery once per
    # outer row, and each rescan skips the rows this UPDATE already locked and takes the next
    # ones — claiming more than ``limit`` (the outbox's tests caught it). Evaluated once, the
    # CTE takes at most ``limit``. The outer WHERE re-checks the condition.
    chosen = candidates.cte("claimable").prefix_with("MATERIALIZED")
    return (
        update(table)
        .where(table.c.id.in_(select(chosen.c.id)), condition, free)
        .values(
            claimed_by=bindparam("worker"),
            claimed_until=bindparam("until", type_=DateTime(timezone=True)),
            **dict(values or {}),
        )
        .returning(*(returning if returning is not None else table.c))
    )


def claim_with(
    engine: Engine,
    statement: Update,
    worker_id: str,
    *,
    limit: int,
    lease: timedelta,
    now: datetime | None = None,
    params: Mapping[str, Any] | None = None,
) -> list[Row[Any]]:
    """Run a :func:`claim_statement` in its own transaction; the claimed rows, in no order."""
    if limit <= 0:
        return []
    now = now or utcnow()
    values = {"now": now, "limit": limit, "worker": worker_id, "until": now + lease}
    with engine.begin() as connection:
        return list(connection.execute(statement, {**values, **dict(params or {})}))


def claim(
    engine: Engine,
    table: Table,
    worker_id: str,
    *,
    ready: Ready,
    order_by: Sequence[Column[Any]],
    limit: int,
    lease: timedelta,
    now: datetime | None = None,
) -> list[Row[Any]]:
    """Claim up to ``limit`` ready rows for ``worker_id``; return them (all columns), in order.

    ``order_by`` is a list of plain columns, ascending (oldest work first).
    """
    statement = claim_statement(
        table, ready=ready, order_by=order_by, postgresql=engine.dialect.name == "postgresql"
    )
    rows = claim_with(engine, statement, worker_id, limit=limit, lease=lease, now=now)
    # RETURNING gives no order; callers want the oldest work first.
    names = [column.key for column in order_by]
    return sorted(rows, key=lambda row: _sort_key(row, names))


def _sort_key(row: Row[Any], names: list[str]) -> tuple[Any, ...]:
    values: list[Any] = []
    for name in names:
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = as_utc(value)
        values.append((value is None, value))  # NULLs last, as PostgreSQL sorts them
    return (*values, row.id)


def release(engine: Engine, table: Table, ids: Sequence[Any], worker_id: str) -> int:
    """Give back rows this worker claimed but did not finish; returns how many were released."""
    if not ids:
        return 0
    with engine.begin() as connection:
        return int(
            connection.execute(
                update(table)
                .where(table.c.id.in_(list(ids)), table.c.claimed_by == worker_id)
                .values(claimed_by=None, claimed_until=None)
            ).rowcount
        )
