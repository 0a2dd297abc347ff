"""Accounts: add, list, disable and change the people who sign in, and the Actor each one is.

Each change is one transaction with its line in the operator audit (who did it, which login,
what changed; never a password or a secret). A disabled account signs in no more, and every
session it had ends at once.

Decisions (docs/web.md):

- a login is lower-case letters, digits and ``._-``, at most 64 characters, and never changes;
- an account with a password always has a second factor: the TOTP secret is made with the
  password and shown once (``agenthub user add`` prints it), so a password alone never signs
  anybody in, not even once to enrol;
- an account without a password signs in only with a SITHS card and needs an HSA-id;
- the agent's operator holds no region roles: operators and a region's staff are different
  people of different organisations, and an operator must never see a woman's content.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from hub.audit import Action, record_operator
from hub.clock import as_utc, utcnow
from hub.context import Hub
from hub.contract.hsaid import is_hsa_id
from hub.contract.regions import LAN_CODE_RE
from hub.db.hub_tables import user_roles, users
from hub.tenancy.access import Actor, Role
from hub.tenancy.registry import get_region
from hub.users import passwords, sessions, totp

log = logging.getLogger(__name__)

LOGIN_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: The roles a user holds in one region (the operator's role is hub-wide: ``operator=True``).
REGION_ROLES: frozenset[Role] = frozenset({Role.REVIEWER, Role.VIEWER, Role.SUBMITTER})


class UserError(ValueError):
    """An account cannot be made or changed as asked; the text says why."""


@dataclass(frozen=True)
class User:
    """One account as ``hub.users`` and ``hub.user_roles`` hold it (never its secrets)."""

    id: int
    login: str
    name: str
    hsa_id: str | None
    operator: bool
    #: län code → the roles held there.
    roles: Mapping[str, frozenset[Role]]
    has_password: bool
    has_totp: bool
    failed_logins: int
    locked_until: datetime | None
    disabled_at: datetime | None
    last_login_at: datetime | None

    @property
    def disabled(self) -> bool:
        """Whether the account was disabled."""
        return self.disabled_at is not None

    def locked(self, now: datetime) -> bool:
        """Whether too many failed sign-ins lock the account at ``now``."""
        return self.locked_until is not None and self.locked_until > now

    @property
    def role_text(self) -> str:
        """The roles as ``reviewer:14 viewer:01`` (or ``operator``)."""
        held = [f"{role.value}:{lan}" for lan in sorted(self.roles) for role in self.roles[lan]]
        if self.operator:
            held.insert(0, Role.OPERATOR.value)
        return " ".join(sorted(held)) or "-"


@dataclass(frozen=True)
class Enrolment:
    """A new TOTP secret, to be shown to its user once and never again."""

    login: str
    secret: str
    uri: str


def actor_of(user: User, auth_method: str) -> Actor:
    """The :class:`Actor` that ``user`` acts as once signed in by ``auth_method``."""
    return Actor(
        kind="user",
        label=f"user:{user.login}",
        user_id=user.id,
        name=user.name,
        hsa_id=user.hsa_id,
        roles=dict(user.roles),
        operator=user.operator,
        auth_method=auth_method,
    )


def _roles_of(connection: Connection, user_ids: list[int]) -> dict[int, dict[str, set[Role]]]:
    held: dict[int, dict[str, set[Role]]] = defaultdict(lambda: defaultdict(set))
    if user_ids:
        rows = connection.execute(
            select(user_roles.c.user_id, user_roles.c.lan_code, user_roles.c.role).where(
                user_roles.c.user_id.in_(user_ids)
            )
        )
        for row in rows:
            held[row.user_id][row.lan_code].add(Role(row.role))
    return held


def _user(r: Row[Any], roles: Mapping[str, set[Role]]) -> User:
    return User(
        id=r.id,
        login=r.login,
        name=r.name,
        hsa_id=r.hsa_id,
        operator=bool(r.operator),
        roles={lan: frozenset(held) for lan, held in sorted(roles.items())},
        has_password=r.password_hash is not None,
        has_totp=r.totp_secret_enc is not None,
        failed_logins=r.failed_logins,
        locked_until=as_utc(r.locked_until),
        disabled_at=as_utc(r.disabled_at),
        last_login_at=as_utc(r.last_login_at),
    )


def get_user(
    connection: Connection,
    *,
    user_id: int | None = None,
    login: str | None = None,
    hsa_id: str | None = None,
) -> User | None:
    """The account with this id, login or HSA-id (exactly one must be given), or None."""
    given = [(users.c.id, user_id), (users.c.login, login), (users.c.hsa_id, hsa_id)]
    chosen = [(column, value) for column, value in given if value is not None]
    if len(chosen) != 1:
        raise TypeError("give exactly one of user_id, login, hsa_id")
    column, value = chosen[0]
    row = connection.execute(select(users).where(column == value)).first()
    if row is None:
        return None
    return _user(row, _roles_of(connection, [row.id]).get(row.id, {}))


def list_users(connection: Connection) -> list[User]:
    """Every account, by login."""
    rows = connection.execute(select(users).order_by(users.c.login)).all()
    roles = _roles_of(connection, [row.id for row in rows])
    return [_user(row, roles.get(row.id, {})) for row in rows]


def parse_roles(pairs: Iterable[tuple[str, str]]) -> dict[str, set[Role]]:
    """``(role, län)`` pairs as typed (``reviewer``, ``14``) → län code → roles."""
    held: dict[str, set[Role]] = defaultdict(set)
    for role_name, lan in pairs:
        try:
            role = Role(role_name.strip().lower())
        except ValueError:
            raise UserError(f"unknown role {role_name!r}: reviewer, viewer or submitter") from None
        if role not in REGION_ROLES:
            raise UserError("the operator is hub-wide: give --operator, not a role in a region")
        if not LAN_CODE_RE.fullmatch(lan):
            raise UserError(f"a län code is two digits, got {lan!r}")
        held[lan].add(role)
    return dict(held)


def _check_regions(connection: Connection, lans: Iterable[str]) -> None:
    for lan in sorted(set(lans)):
        if get_region(connection, lan) is None:
            raise UserError(f"region {lan} is not registered")


def _require(connection: Connection, login: str) -> User:
    user = get_user(connection, login=login)
    if user is None:
        raise UserError(f"no user {login!r}")
    return user


def _enrol(hub: Hub, login: str) -> tuple[Enrolment, bytes]:
    secret = totp.new_secret()
    enrolment = Enrolment(login, secret, totp.provisioning_uri(secret, login))
    return enrolment, totp.seal_secret(hub.keys, login, secret)


def check_new_user(
    *,
    login: str,
    name: str,
    hsa_id: str | None,
    roles: Mapping[str, Iterable[Role]] | None,
    operator: bool,
    with_password: bool,
) -> tuple[str, str, dict[str, set[Role]]]:
    """Check an account's definition before anything is asked or stored (the command line asks
    for the password only after this); returns the login, name and roles as they will be kept.

    Whether the regions exist and the login is free is checked when the account is stored.
    """
    login = login.strip()
    name = " ".join(name.split())
    held = {lan: set(given) for lan, given in (roles or {}).items() if given}
    if not LOGIN_RE.fullmatch(login):
        raise UserError(
            "a login is 1-64 lower-case letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if not name or len(name) > 200:
        raise UserError("a name is 1-200 characters")
    if hsa_id is not None and not is_hsa_id(hsa_id):
        raise UserError(f"{hsa_id!r} is not an HSA-id (SE + ten digits, optionally -suffix)")
    if operator and held:
        raise UserError(
            "the operator holds no region roles (metadata only, every region): a person who "
            "also works for a region gets a second account"
        )
    if not operator and not held:
        raise UserError("give a user at least one --role in a region, or --operator")
    if not with_password and hsa_id is None:
        raise UserError("a user without a password signs in with SITHS and needs an --hsa-id")
    return login, name, held


def add_user(
    hub: Hub,
    actor: Actor,
    *,
    login: str,
    name: str,
    hsa_id: str | None = None,
    roles: Mapping[str, Iterable[Role]] | None = None,
    operator: bool = False,
    password: str | None = None,
) -> Enrolment | None:
    """Make an account; return its TOTP enrolment (to show once) when it has a password.

    Raises :class:`UserError` (or :class:`~hub.users.passwords.WeakPassword`) when the account
    cannot be made as asked.
    """
    login, name, held = check_new_user(
        login=login,
        name=name,
        hsa_id=hsa_id,
        roles=roles,
        operator=operator,
        with_password=password is not None,
    )
    password_hash = passwords.hash_password(password) if password is not None else None
    enrolment, sealed = _enrol(hub, login) if password is not None else (None, None)
    now = utcnow()
    with hub.db.hub.begin() as connection:
        _check_regions(connection, held)
        if get_user(connection, login=login) is not None:
            raise UserError(f"user {login!r} already exists")
        if hsa_id is not None and get_user(connection, hsa_id=hsa_id) is not None:
            raise UserError(f"another user already has HSA-id {hsa_id}")
        user_id = connection.execute(
            insert(users)
            .values(
                login=login,
                name=name,
                hsa_id=hsa_id,
                password_hash=password_hash,
                totp_secret_enc=sealed,
                operator=operator,
                created_at=now,
                updated_at=now,
            )
            .returning(users.c.id)
        ).scalar_one()
        _grant(connection, user_id, held)
        added = get_user(connection, user_id=user_id)
        assert added is not None
        record_operator(
            connection,
            actor,
            Action.USER_ADDED,
            None,
            f"user {login} (id {user_id}): {added.role_text}; "
            f"password={'yes' if password_hash else 'no'} siths={'yes' if hsa_id else 'no'}",
        )
    log.info("user %s (id %d) added by %s", login, user_id, actor.label)
    return enrolment


def _grant(connection: Connection, user_id: int, roles: Mapping[str, Iterable[Role]]) -> None:
    rows = [
        {"user_id": user_id, "lan_code": lan, "role": role.value}
        for lan, held in roles.items()
        for role in held
    ]
    if rows:
        connection.execute(insert(user_roles), rows)


def set_disabled(hub: Hub, actor: Actor, login: str, disabled: bool) -> int:
    """Disable (or enable again) an account; a disabled one's sessions end at once.

    Returns the number of sessions ended.
    """
    now = utcnow()
    with hub.db.hub.begin() as connection:
        user = _require(connection, login)
        connection.execute(
            update(users)
            .where(users.c.id == user.id)
            .values(disabled_at=now if disabled else None, updated_at=now)
        )
        ended = sessions.end_all_of(connection, user.id) if disabled else 0
        action = Action.USER_DISABLED if disabled else Action.USER_ENABLED
        record_operator(connection, actor, action, None, f"user {login} (id {user.id})")
    log.info("user id %d %s by %s", user.id, "disabled" if disabled else "enabled", actor.label)
    return ended


def change_roles(
    hub: Hub,
    actor: Actor,
    login: str,
    *,
    grant: Mapping[str, Iterable[Role]] | None = None,
    revoke: Mapping[str, Iterable[Role]] | None = None,
) -> User:
    """Grant and revoke region roles; the user's next request acts with the new ones."""
    grant = {lan: set(held) for lan, held in (grant or {}).items()}
    revoke = {lan: set(held) for lan, held in (revoke or {}).items()}
    with hub.db.hub.begin() as connection:
        user = _require(connection, login)
        if user.operator and grant:
            raise UserError("the operator holds no region roles")
        _check_regions(connection, grant)
        for lan, held in revoke.items():
            connection.execute(
                delete(user_roles).where(
                    user_roles.c.user_id == user.id,
                    user_roles.c.lan_code == lan,
                    user_roles.c.role.in_([role.value for role in held]),
                )
            )
        new = {
            lan: {role for role in held if role not in user.roles.get(lan, frozenset())}
            for lan, held in grant.items()
        }
        _grant(connection, user.id, new)
        changed = get_user(connection, user_id=user.id)
        assert changed is not None
        record_operator(
            connection,
            actor,
            Action.USER_ROLES_CHANGED,
            None,
            f"user {login} (id {user.id}): {user.role_text} -> {changed.role_text}",
        )
    return changed


def unlock(hub: Hub, actor: Actor, login: str) -> None:
    """End a lockout before its time (the user called the service desk)."""
    with hub.db.hub.begin() as connection:
        user = _require(connection, login)
        connection.execute(
            update(users)
            .where(users.c.id == user.id)
            .values(failed_logins=0, locked_until=None, updated_at=utcnow())
        )
        record_operator(connection, actor, Action.USER_UNLOCKED, None, f"user {login}")


def set_password(hub: Hub, actor: Actor, login: str, password: str) -> Enrolment | None:
    """Set a new password; every session of the user ends. Returns a TOTP enrolment when the
    account had no second factor yet (a SITHS user who now gets a password too)."""
    password_hash = passwords.hash_password(password)
    now = utcnow()
    with hub.db.hub.begin() as connection:
        user = _require(connection, login)
        values: dict[str, object] = {"password_hash": password_hash, "updated_at": now}
        enrolment = None
        if not user.has_totp:
            enrolment, values["totp_secret_enc"] = _enrol(hub, login)
            values["totp_last_step"] = None
        connection.execute(update(users).where(users.c.id == user.id).values(**values))
        sessions.end_all_of(connection, user.id)
        record_operator(connection, actor, Action.USER_PASSWORD_SET, None, f"user {login}")
    return enrolment


def enrol_totp(hub: Hub, actor: Actor, login: str) -> Enrolment:
    """Replace a user's TOTP secret (a lost phone); the old codes stop working at once."""
    now = utcnow()
    with hub.db.hub.begin() as connection:
        user = _require(connection, login)
        if not user.has_password:
            raise UserError(f"user {login!r} signs in with SITHS only and has no second factor")
        enrolment, sealed = _enrol(hub, login)
        connection.execute(
            update(users)
            .where(users.c.id == user.id)
            .values(totp_secret_enc=sealed, totp_last_step=None, updated_at=now)
        )
        sessions.end_all_of(connection, user.id)
        record_operator(connection, actor, Action.USER_TOTP_ENROLLED, None, f"user {login}")
    return enrolment
