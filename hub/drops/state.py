"""Each region's drop health: reachable or not, last success, last error, and the backoff.

One row per region in ``hub.drop_state`` (:mod:`hub.db.hub_tables`). Every job that talks to a
region's drop — delivering received files, picking up extracts, writing receipts, probing —
goes through :func:`hub.drops.session.region_drop`, which reads this state before and records
the outcome after, so that operators see one story per drop (``agenthub drops status``) and a
drop that is down is retried with capped exponential backoff instead of being hammered.

``config_hash`` is :func:`hub.drops.regional.drop_config_hash` of the region: a failure seen with
one configuration does not hold back a changed one (an operator who fixed a password or pinned a
new host key should not wait out the backoff).

The wait after the n-th consecutive failure is ``min(cap, base * 2**(n-1))``; after a
*permanent* error (wrong password, changed host key, permission denied) it is the cap at once:
retrying cannot help until someone changes the configuration, but a slow retry notices when they
have. Error texts are run through :func:`~hub.contract.personnummer.mask_text` before they are
stored, as a last line of defence; drop errors name paths and message ids, never a woman.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.clock import as_utc, utcnow
from hub.contract.personnummer import mask_text
from hub.db.hub_tables import drop_state
from hub.drops.base import DropError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """How long a failing drop is left alone: ``base_s`` after the first failure, doubling, at
    most ``cap_s`` (and ``cap_s`` at once after a permanent error)."""

    base_s: int = 5
    cap_s: int = 900


MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class DropState:
    """One region's drop health as recorded."""

    lan_code: str
    reachable: bool | None = None
    last_check_at: datetime | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    failing_since: datetime | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    error_permanent: bool = False
    next_attempt_at: datetime | None = None
    config_hash: str | None = None


def _from_row(row: object) -> DropState:
    return DropState(
        lan_code=row.lan_code,  # type: ignore[attr-defined]
        reachable=row.reachable,  # type: ignore[attr-defined]
        last_check_at=as_utc(row.last_check_at),  # type: ignore[attr-defined]
        last_success_at=as_utc(row.last_success_at),  # type: ignore[attr-defined]
        last_failure_at=as_utc(row.last_failure_at),  # type: ignore[attr-defined]
        failing_since=as_utc(row.failing_since),  # type: ignore[attr-defined]
        consecutive_failures=row.consecutive_failures or 0,  # type: ignore[attr-defined]
        last_error=row.last_error,  # type: ignore[attr-defined]
        error_permanent=bool(row.error_permanent),  # type: ignore[attr-defined]
        next_attempt_at=as_utc(row.next_attempt_at),  # type: ignore[attr-defined]
        config_hash=row.config_hash,  # type: ignore[attr-defined]
    )


def get_state(connection: Connection, lan_code: str) -> DropState | None:
    """The recorded state of one region's drop, or None if nothing was ever recorded."""
    row = connection.execute(select(drop_state).where(drop_state.c.lan_code == lan_code)).first()
    return None if row is None else _from_row(row)


def all_states(connection: Connection) -> dict[str, DropState]:
    """Every recorded drop state, by län code."""
    return {row.lan_code: _from_row(row) for row in connection.execute(select(drop_state))}


def backoff_delay(failures: int, *, base_s: int, cap_s: int, permanent: bool) -> timedelta:
    """The wait before the next attempt after ``failures`` consecutive failures (>= 1)."""
    if permanent:
        return timedelta(seconds=cap_s)
    exponent = min(max(failures, 1) - 1, 32)  # 2**32 * base is past any sane cap already
    return timedelta(seconds=min(cap_s, base_s * 2**exponent))


def state_allows(state: DropState | None, config_hash: str, now: datetime) -> bool:
    """Whether a job may use the drop now (not backing off, or its configuration changed)."""
    if state is None or state.next_attempt_at is None:
        return True
    if state.config_hash != config_hash:
        return True
    return state.next_attempt_at <= now


def _upsert(connection: Connection, lan_code: str, values: dict[str, object]) -> None:
    changed = connection.execute(
        update(drop_state).where(drop_state.c.lan_code == lan_code).values(**values)
    ).rowcount
    if changed:
        return
    defaults: dict[str, object] = {"consecutive_failures": 0, "error_permanent": False}
    try:
        with connection.begin_nested():
            connection.execute(
                insert(drop_state).values(lan_code=lan_code, **{**defaults, **values})
            )
    except IntegrityError:
        # Another worker inserted the row first; ours becomes an update of it.
        connection.execute(
            update(drop_state).where(drop_state.c.lan_code == lan_code).values(**values)
        )


def record_success(
    engine: Engine, lan_code: str, config_hash: str, now: datetime | None = None
) -> None:
    """The drop worked: reachable, failures reset, no backoff."""
    now = now or utcnow()
    with engine.begin() as connection:
        _upsert(
            connection,
            lan_code,
            {
                "reachable": True,
                "last_check_at": now,
                "last_success_at": now,
                "failing_since": None,
                "consecutive_failures": 0,
                "last_error": None,
                "error_permanent": False,
                "next_attempt_at": None,
                "config_hash": config_hash,
                "updated_at": now,
            },
        )


def record_failure(
    engine: Engine,
    lan_code: str,
    error: BaseException,
    config_hash: str,
    backoff: Backoff,
    now: datetime | None = None,
) -> DropState:
    """The drop failed: count it, store why, and set the next attempt; return the new state.

    ``error`` is usually a :class:`~hub.drops.base.DropError` (its ``permanent`` flag decides the
    wait); anything else counts as transient.
    """
    now = now or utcnow()
    permanent = bool(getattr(error, "permanent", False))
    text = mask_text(f"{type(error).__name__}: {error}")[:MAX_ERROR_CHARS]
    with engine.begin() as connection:
        # FOR UPDATE on PostgreSQL: two workers failing at once both count (SQLite serialises).
        row = connection.execute(
            select(drop_state).where(drop_state.c.lan_code == lan_code).with_for_update()
        ).first()
        previous = None if row is None else _from_row(row)
        same_config = previous is not None and previous.config_hash == config_hash
        failures = (previous.consecutive_failures if same_config and previous else 0) + 1
        since = previous.failing_since if same_config and previous else None
        next_at = now + backoff_delay(
            failures, base_s=backoff.base_s, cap_s=backoff.cap_s, permanent=permanent
        )
        values: dict[str, object] = {
            "reachable": False,
            "last_check_at": now,
            "last_failure_at": now,
            "failing_since": since or now,
            "consecutive_failures": failures,
            "last_error": text,
            "error_permanent": permanent,
            "next_attempt_at": next_at,
            "config_hash": config_hash,
            "updated_at": now,
        }
        _upsert(connection, lan_code, values)
    level = logging.ERROR if permanent else logging.WARNING
    # An operator alert: a permanent error will not heal by itself.
    log.log(
        level,
        "region %s: drop failed (%s%s); next attempt at %s",
        lan_code,
        "permanent, needs an operator: " if permanent else "",
        text,
        next_at.isoformat(timespec="seconds"),
    )
    return DropState(
        lan_code=lan_code,
        reachable=False,
        last_check_at=now,
        last_success_at=previous.last_success_at if previous else None,
        last_failure_at=now,
        failing_since=since or now,
        consecutive_failures=failures,
        last_error=text,
        error_permanent=permanent,
        next_attempt_at=next_at,
        config_hash=config_hash,
    )


def reset(engine: Engine, lan_code: str) -> None:
    """Forget the backoff so the next run tries at once (an operator fixed something)."""
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            update(drop_state)
            .where(drop_state.c.lan_code == lan_code)
            .values(next_attempt_at=None, updated_at=now)
        )


__all__ = [
    "Backoff",
    "DropError",
    "DropState",
    "all_states",
    "backoff_delay",
    "get_state",
    "record_failure",
    "record_success",
    "reset",
    "state_allows",
]
