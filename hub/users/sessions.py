"""Web sessions kept in the database (``hub.web_sessions``), so every web node sees every one.

The browser's cookie holds a random session id (256 bits); the table holds only its SHA-256, so
a copy of the table signs nobody in. A session ends ``session_idle_minutes`` after its last
request and in any case ``session_lifetime_hours`` after it began: ``expires_at`` is kept at the
earlier of the two, so one indexed comparison answers both and expired rows are easy to purge.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from hub.clock import as_utc
from hub.config import Settings
from hub.db.hub_tables import web_sessions

#: What a session id looks like (``secrets.token_urlsafe(32)``): anything else is not looked up.
_SID_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def new_session_id() -> str:
    """A fresh random session id for a cookie."""
    return secrets.token_urlsafe(32)


def hash_session_id(sid: str) -> str:
    """What the table keeps of a session id."""
    return hashlib.sha256(sid.encode()).hexdigest()


def looks_like_session_id(value: str) -> bool:
    """Whether a cookie's value could be a session id at all."""
    return _SID_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class StoredSession:
    """A live session as read from the table."""

    id_hash: str
    user_id: int | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    auth_method: str | None
    data: dict[str, Any]


def expiry(settings: Settings, created_at: datetime, now: datetime) -> datetime:
    """When a session begun at ``created_at`` and seen ``now`` ends if nothing more happens."""
    idle = now + timedelta(minutes=settings.session_idle_minutes)
    absolute = created_at + timedelta(hours=settings.session_lifetime_hours)
    return min(idle, absolute)


def load(connection: Connection, sid: str, now: datetime) -> StoredSession | None:
    """The live session with id ``sid``, or None (unknown, malformed or expired)."""
    if not looks_like_session_id(sid):
        return None
    row = connection.execute(
        select(web_sessions).where(web_sessions.c.id_hash == hash_session_id(sid))
    ).first()
    if row is None or as_utc(row.expires_at) <= now:
        return None
    return StoredSession(
        id_hash=row.id_hash,
        user_id=row.user_id,
        created_at=as_utc(row.created_at),
        last_seen_at=as_utc(row.last_seen_at),
        expires_at=as_utc(row.expires_at),
        auth_method=row.auth_method,
        data=dict(row.data or {}),
    )


def create(
    connection: Connection,
    settings: Settings,
    now: datetime,
    *,
    user_id: int | None,
    auth_method: str | None,
    data: dict[str, Any],
) -> str:
    """Store a new session and return its id (for the cookie); expired sessions are purged."""
    purge_expired(connection, now)
    sid = new_session_id()
    connection.execute(
        insert(web_sessions).values(
            id_hash=hash_session_id(sid),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=expiry(settings, now, now),
            auth_method=auth_method,
            data=data,
        )
    )
    return sid


def save(
    connection: Connection,
    settings: Settings,
    stored: StoredSession,
    now: datetime,
    *,
    user_id: int | None,
    auth_method: str | None,
    data: dict[str, Any] | None,
) -> None:
    """Mark a session seen ``now`` (its idle time starts again); ``data`` replaces its data."""
    values: dict[str, Any] = {
        "last_seen_at": now,
        "expires_at": expiry(settings, stored.created_at, now),
        "user_id": user_id,
        "auth_method": auth_method,
    }
    if data is not None:
        values["data"] = data
    connection.execute(
        update(web_sessions).where(web_sessions.c.id_hash == stored.id_hash).values(**values)
    )


def end(connection: Connection, id_hash: str) -> None:
    """End one session (sign-out, a new id at sign-in)."""
    connection.execute(delete(web_sessions).where(web_sessions.c.id_hash == id_hash))


def end_all_of(connection: Connection, user_id: int) -> int:
    """End every session of a user (disabled, password changed); returns how many."""
    result = connection.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id))
    return result.rowcount or 0


def purge_expired(connection: Connection, now: datetime) -> int:
    """Delete the sessions that have ended; returns how many."""
    result = connection.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))
    return result.rowcount or 0
