"""Signing in: a password and then a one-time code, or a SITHS card; and the lockout.

Every failure answers the same (:data:`None`) whatever the reason — an unknown login, a wrong
password, a locked or disabled account — and costs the same: one Argon2 verification each time,
so neither the answer nor its timing tells whether a login exists.

Lockout: ``login_max_failures`` failures in a row (wrong passwords and wrong codes alike, counted
per account) lock the account for ``login_lockout_minutes``; while locked, even the right
password is refused. A full sign-in (password and code) clears the count. Counting is one
conditional UPDATE, so parallel guesses cannot slip past the limit.

What is logged names the account by its id, never the login typed (which may be a password typed
in the wrong field), the password or the code.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Connection, case, or_, update

from hub.clock import utcnow
from hub.context import Hub
from hub.db.hub_tables import users
from hub.tenancy.access import Actor
from hub.users import passwords, totp
from hub.users.accounts import User, actor_of, get_user

log = logging.getLogger(__name__)

PASSWORD_AND_CODE = "password+totp"  # noqa: S105 (how one signed in)
SITHS = "siths"


def _count_failure(hub: Hub, connection: Connection, user_id: int, now: datetime) -> None:
    limit = hub.settings.login_max_failures
    until = now + timedelta(minutes=hub.settings.login_lockout_minutes)
    reached = users.c.failed_logins + 1 >= limit
    connection.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(
            failed_logins=case((reached, 0), else_=users.c.failed_logins + 1),
            locked_until=case((reached, until), else_=users.c.locked_until),
            updated_at=now,
        )
    )


def _usable(user: User | None, now: datetime) -> bool:
    return (
        user is not None
        and not user.disabled
        and not user.locked(now)
        and user.has_password
        and user.has_totp
    )


def check_password(hub: Hub, login: str, password: str) -> int | None:
    """The account's id when ``password`` is right and it may sign in; then its code is asked.

    None for every failure, after the same work. A wrong password counts towards the lockout.
    """
    now = utcnow()
    with hub.db.hub.begin() as connection:
        user = get_user(connection, login=login) if login else None
        if user is None or not _usable(user, now):
            passwords.verify_nothing(password)
            if user is None:
                log.info("sign-in refused: no such login")
            else:
                log.info("sign-in refused: account %d disabled, locked or incomplete", user.id)
            return None
        stored = connection.execute(
            users.select().with_only_columns(users.c.password_hash).where(users.c.id == user.id)
        ).scalar_one()
        if not passwords.verify(stored, password):
            _count_failure(hub, connection, user.id, now)
            log.info("sign-in refused: wrong password for account %d", user.id)
            return None
        if passwords.needs_rehash(stored):
            connection.execute(
                update(users)
                .where(users.c.id == user.id)
                .values(password_hash=passwords.hash_password(password))
            )
    return user.id


def check_code(hub: Hub, user_id: int, code: str) -> Actor | None:
    """The signed-in actor when ``code`` is the account's current one-time code; else None.

    A wrong code counts towards the lockout. A code is accepted once: the same code again (or
    one of an earlier time step) is refused, also when two requests race with it.
    """
    now = utcnow()
    with hub.db.hub.begin() as connection:
        user = get_user(connection, user_id=user_id)
        if user is None or not _usable(user, now):
            log.info("second factor refused: account %d disabled, locked or gone", user_id)
            return None
        row = connection.execute(
            users.select()
            .with_only_columns(users.c.totp_secret_enc, users.c.totp_last_step)
            .where(users.c.id == user.id)
        ).one()
        secret = totp.open_secret(hub.keys, user.login, row.totp_secret_enc)
        step = totp.accepted_step(secret, code, now, row.totp_last_step)
        if step is not None:
            # Only one request may spend a code: the step must still be newer than the last.
            spent = connection.execute(
                update(users)
                .where(
                    users.c.id == user.id,
                    or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
                )
                .values(
                    totp_last_step=step,
                    failed_logins=0,
                    locked_until=None,
                    last_login_at=now,
                    updated_at=now,
                )
            )
            if spent.rowcount == 1:
                log.info("account %d signed in (password and one-time code)", user.id)
                return actor_of(user, PASSWORD_AND_CODE)
        _count_failure(hub, connection, user.id, now)
        log.info("second factor refused: wrong or spent code for account %d", user.id)
        return None


def sign_in_siths(hub: Hub, hsa_id: str) -> Actor | None:
    """The signed-in actor for the HSA-id of a SITHS card the ingress verified; else None.

    The card is the strong authentication (the card and its PIN): no password or code is asked,
    and the lockout, which is about guessing passwords, does not apply.
    """
    now = utcnow()
    with hub.db.hub.begin() as connection:
        user = get_user(connection, hsa_id=hsa_id)
        if user is None or user.disabled:
            log.info("SITHS sign-in refused: no enabled account has this HSA-id")
            return None
        connection.execute(
            update(users).where(users.c.id == user.id).values(last_login_at=now, updated_at=now)
        )
    log.info("account %d signed in (SITHS)", user.id)
    return actor_of(user, SITHS)


def load_actor(hub: Hub, user_id: int, auth_method: str) -> Actor | None:
    """The actor of a signed-in session's account, with its roles as they are now; None when
    the account is gone or disabled (its session is then no longer signed in)."""
    with hub.db.hub.connect() as connection:
        user = get_user(connection, user_id=user_id)
    if user is None or user.disabled:
        return None
    return actor_of(user, auth_method)
