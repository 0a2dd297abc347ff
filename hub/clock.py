"""Time, one way: every stored time is aware UTC; the contract's dates are Swedish local dates."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime
from typing import Final, overload

STOCKHOLM: Final = zoneinfo.ZoneInfo("Europe/Stockholm")


def utcnow() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


def swedish_today() -> date:
    """Today's date in Sweden: the contract's dates are Swedish local dates (docs/contract.md)."""
    return datetime.now(STOCKHOLM).date()


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
@overload
def as_utc(value: datetime | None) -> datetime | None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime.

    SQLite hands stored times back naive (they were written as UTC); PostgreSQL hands them back
    aware, possibly in the session's zone. Either way the answer is the same instant in UTC.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
