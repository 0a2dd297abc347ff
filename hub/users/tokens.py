"""API bearer tokens: bound to one user and one region, shown once, kept only as a hash.

A token is ``ahub_`` and 256 random bits (URL-safe base64). The table keeps its SHA-256: the
token is long and random, so a fast hash suffices where a password would need a slow one. A
token acts as its user with the roles the user holds *now* in the token's region, and nothing
elsewhere; it stops working when revoked, when it expires (90 days unless said otherwise, at
most 365), when the user is disabled, or when the user holds no role in that region any more.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, or_, select, update

from hub.audit import Action, record_operator
from hub.clock import as_utc, utcnow
from hub.context import Hub
from hub.db.hub_tables import api_tokens, users
from hub.tenancy.access import Actor, Role
from hub.users.accounts import UserError, actor_of, get_user

log = logging.getLogger(__name__)

PREFIX = "ahub_"
_TOKEN_RE = re.compile(rf"{PREFIX}[A-Za-z0-9_-]{{43}}")
DEFAULT_DAYS = 90
MAX_DAYS = 365
#: How often a token's ``last_used_at`` is written at most: not a write on every API call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedToken:
    """A new token: :attr:`token` is shown once and cannot be had again."""

    id: int
    token: str
    login: str
    lan: str
    label: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenInfo:
    """What ``token list`` shows of a token (never the token)."""

    id: int
    login: str
    lan: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


def hash_token(token: str) -> str:
    """What the table keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    hub: Hub, actor: Actor, login: str, lan: str, *, label: str = "", days: int = DEFAULT_DAYS
) -> IssuedToken:
    """Issue a token for ``login`` in region ``lan``, where the user must hold a role."""
    if not 1 <= days <= MAX_DAYS:
        raise UserError(f"a token lasts 1-{MAX_DAYS} days")
    label = " ".join(label.split())[:100] or "api"
    token = PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + timedelta(days=days)
    with hub.db.hub.begin() as connection:
        user = get_user(connection, login=login)
        if user is None:
            raise UserError(f"no user {login!r}")
        if user.disabled:
            raise UserError(f"user {login!r} is disabled")
        if not user.operator and not user.roles.get(lan):
            raise UserError(f"user {login!r} holds no role in region {lan}")
        token_id = connection.execute(
            insert(api_tokens)
            .values(
                user_id=user.id,
                lan_code=lan,
                token_hash=hash_token(token),
                label=label,
                created_at=now,
                expires_at=expires,
            )
            .returning(api_tokens.c.id)
        ).scalar_one()
        record_operator(
            connection,
            actor,
            Action.TOKEN_CREATED,
            lan,
            f"token {token_id} for user {login} ({label}), expires {expires:%Y-%m-%d}",
        )
    return IssuedToken(token_id, token, login, lan, label, expires)


def list_tokens(connection: Connection, login: str | None = None) -> list[TokenInfo]:
    """Every token (of ``login`` if given), newest first."""
    query = (
        select(api_tokens, users.c.login)
        .join(users, users.c.id == api_tokens.c.user_id)
        .order_by(api_tokens.c.id.desc())
    )
    if login is not None:
        query = query.where(users.c.login == login)
    return [
        TokenInfo(
            id=row.id,
            login=row.login,
            lan=row.lan_code,
            label=row.label,
            created_at=as_utc(row.created_at),
            expires_at=as_utc(row.expires_at),
            last_used_at=as_utc(row.last_used_at),
            revoked_at=as_utc(row.revoked_at),
        )
        for row in connection.execute(query)
    ]


def revoke_token(hub: Hub, actor: Actor, token_id: int) -> None:
    """Revoke a token: it is refused from the next request on."""
    with hub.db.hub.begin() as connection:
        row = connection.execute(
            select(api_tokens.c.lan_code, api_tokens.c.revoked_at).where(
                api_tokens.c.id == token_id
            )
        ).first()
        if row is None:
            raise UserError(f"no token {token_id}")
        if row.revoked_at is None:
            connection.execute(
                update(api_tokens).where(api_tokens.c.id == token_id).values(revoked_at=utcnow())
            )
        record_operator(connection, actor, Action.TOKEN_REVOKED, row.lan_code, f"token {token_id}")


def actor_for_token(hub: Hub, token: str) -> Actor | None:
    """The actor a bearer token acts as (its user, only in its region), or None if refused."""
    if not _TOKEN_RE.fullmatch(token):
        return None
    now = utcnow()
    with hub.db.hub.begin() as connection:
        row = connection.execute(
            select(api_tokens).where(api_tokens.c.token_hash == hash_token(token))
        ).first()
        if row is None or row.revoked_at is not None:
            return None
        expires = as_utc(row.expires_at)
        if expires is not None and expires <= now:
            return None
        user = get_user(connection, user_id=row.user_id)
        if user is None or user.disabled:
            return None
        lan = row.lan_code
        held = {Role.OPERATOR} if user.operator else set(user.roles.get(lan, frozenset()))
        if not held:
            return None
        connection.execute(
            update(api_tokens)
            .where(
                api_tokens.c.id == row.id,
                or_(
                    api_tokens.c.last_used_at.is_(None),
                    api_tokens.c.last_used_at < now - LAST_USED_RESOLUTION,
                ),
            )
            .values(last_used_at=now)
        )
    scoped = actor_of(user, "token")
    # The token's region only: an operator's token is the operator's role in that one region.
    return Actor(
        kind="user",
        label=scoped.label,
        user_id=scoped.user_id,
        name=scoped.name,
        hsa_id=scoped.hsa_id,
        roles={lan: frozenset(held)},
        operator=False,
        auth_method="token",
    )
