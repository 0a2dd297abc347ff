"""``agenthub user add | list | disable | enable | roles | unlock | password | reset-totp``.

The people who sign in to the web workspace and the API (docs/web.md). A password comes from a
prompt or ``--password-file``, never from the command line (it would sit in the shell's history
and in ``ps``). The second factor's secret is printed once, when it is made; nothing prints it
again (``reset-totp`` makes a new one).
"""

from __future__ import annotations

from pathlib import Path

import click

from hub.cli.common import CliState, Refused, fmt_time, pass_state
from hub.clock import utcnow
from hub.tenancy.access import Role
from hub.users.accounts import (
    Enrolment,
    User,
    add_user,
    change_roles,
    check_new_user,
    enrol_totp,
    list_users,
    parse_roles,
    set_disabled,
    set_password,
    unlock,
)

_ROLE_CHOICE = click.Choice(["reviewer", "viewer", "submitter"], case_sensitive=False)


def _read_password(password_file: Path | None) -> str:
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        if not lines:
            raise Refused(f"{password_file} is empty")
        return lines[0]
    value: str = click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
    return value


def _pairs(roles: tuple[str, ...], lans: tuple[str, ...]) -> dict[str, set[Role]]:
    """``--role``/``--lan`` as typed: one ``--lan`` for every role, or one ``--lan`` per role."""
    if not roles and not lans:
        return {}
    if not roles or not lans:
        raise Refused("give --role and --lan together (--role reviewer --lan 14)")
    if len(lans) == 1:
        lans = lans * len(roles)
    if len(lans) != len(roles):
        raise Refused("give one --lan for all roles, or one --lan after each --role")
    return parse_roles(zip(roles, lans, strict=True))


def _show_enrolment(enrolment: Enrolment | None) -> None:
    if enrolment is None:
        return
    click.echo("second factor (shown this once: enrol it in an authenticator app now)")
    click.echo(f"  secret: {enrolment.secret}")
    click.echo(f"  uri:    {enrolment.uri}")


@click.group("user")
def user_group() -> None:
    """The people who sign in: reviewers, viewers, submitters, operators."""


@user_group.command("add")
@click.option("--login", required=True, help="lower-case, never changes")
@click.option("--name", required=True, help="the person's name, as logs show it")
@click.option("--hsa-id", help="the personal HSA-id of their SITHS card (SE…-…)")
@click.option("--role", "roles", multiple=True, type=_ROLE_CHOICE, help="repeatable")
@click.option("--lan", "lans", multiple=True, metavar="NN", help="repeatable, pairs with --role")
@click.option("--operator", is_flag=True, help="the agent's operator (every region, metadata)")
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="read the password from this file's first line instead of a prompt",
)
@click.option("--no-password", is_flag=True, help="SITHS sign-in only (needs --hsa-id)")
@pass_state
def add(
    state: CliState,
    login: str,
    name: str,
    hsa_id: str | None,
    roles: tuple[str, ...],
    lans: tuple[str, ...],
    operator: bool,
    password_file: Path | None,
    no_password: bool,
) -> None:
    """Add a user; prints the second factor's secret once."""
    held = _pairs(roles, lans)
    if no_password and password_file is not None:
        raise Refused("give --password-file or --no-password, not both")
    # Everything that can be wrong is said before the password is asked for.
    check_new_user(
        login=login,
        name=name,
        hsa_id=hsa_id,
        roles=held,
        operator=operator,
        with_password=not no_password,
    )
    password = None if no_password else _read_password(password_file)
    enrolment = add_user(
        state.hub,
        state.actor,
        login=login,
        name=name,
        hsa_id=hsa_id,
        roles=held,
        operator=operator,
        password=password,
    )
    what = "operator" if operator else " ".join(f"{r}:{lan}" for lan in held for r in held[lan])
    click.echo(f"user {login} added ({what})")
    _show_enrolment(enrolment)


def _state_of(user: User) -> str:
    if user.disabled:
        return "disabled"
    if user.locked(utcnow()):
        return f"locked until {fmt_time(user.locked_until)}"
    return "active"


@user_group.command("list")
@pass_state
def list_command(state: CliState) -> None:
    """Every user with roles, how they sign in, and state (no secrets)."""
    with state.hub.db.hub.connect() as connection:
        rows = list_users(connection)
    click.echo(
        f"{'login':<16} {'name':<24} {'hsa-id':<20} {'sign-in':<19} {'state':<28} "
        f"{'last sign-in':<19} roles"
    )
    for u in rows:
        ways = [w for w, has in (("password+totp", u.has_password), ("siths", u.hsa_id)) if has]
        click.echo(
            f"{u.login:<16} {u.name:<24} {u.hsa_id or '-':<20} {','.join(ways) or '-':<19} "
            f"{_state_of(u):<28} {fmt_time(u.last_login_at):<19} {u.role_text}"
        )


@user_group.command("disable")
@click.option("--login", required=True)
@pass_state
def disable(state: CliState, login: str) -> None:
    """Disable a user: no more sign-ins, and every session ends now."""
    ended = set_disabled(state.hub, state.actor, login, True)
    click.echo(f"user {login} disabled; {ended} session(s) ended")


@user_group.command("enable")
@click.option("--login", required=True)
@pass_state
def enable(state: CliState, login: str) -> None:
    """Enable a disabled user again."""
    set_disabled(state.hub, state.actor, login, False)
    click.echo(f"user {login} enabled")


@user_group.command("roles")
@click.option("--login", required=True)
@click.option("--grant", multiple=True, metavar="ROLE:NN", help="e.g. reviewer:14; repeatable")
@click.option("--revoke", multiple=True, metavar="ROLE:NN", help="e.g. viewer:01; repeatable")
@pass_state
def roles_command(
    state: CliState, login: str, grant: tuple[str, ...], revoke: tuple[str, ...]
) -> None:
    """Grant or revoke a user's roles in regions; takes effect on their next request."""

    def split(values: tuple[str, ...]) -> dict[str, set[Role]]:
        pairs = []
        for value in values:
            role, _, lan = value.partition(":")
            if not lan:
                raise Refused(f"{value!r}: give ROLE:NN, e.g. reviewer:14")
            pairs.append((role, lan))
        return parse_roles(pairs)

    user = change_roles(state.hub, state.actor, login, grant=split(grant), revoke=split(revoke))
    click.echo(f"user {login}: {user.role_text}")


@user_group.command("unlock")
@click.option("--login", required=True)
@pass_state
def unlock_command(state: CliState, login: str) -> None:
    """End a lockout after failed sign-ins before its time."""
    unlock(state.hub, state.actor, login)
    click.echo(f"user {login} unlocked")


@user_group.command("password")
@click.option("--login", required=True)
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_state
def password_command(state: CliState, login: str, password_file: Path | None) -> None:
    """Set a new password; the user's sessions end."""
    enrolment = set_password(state.hub, state.actor, login, _read_password(password_file))
    click.echo(f"user {login}: password set")
    _show_enrolment(enrolment)


@user_group.command("reset-totp")
@click.option("--login", required=True)
@pass_state
def reset_totp(state: CliState, login: str) -> None:
    """Make a new second-factor secret (a lost phone); prints it once, old codes stop working."""
    enrolment = enrol_totp(state.hub, state.actor, login)
    click.echo(f"user {login}: new second factor")
    _show_enrolment(enrolment)


COMMANDS = [user_group]
