"""``agenthub token create | list | revoke``: API bearer tokens, bound to a user and a region."""

from __future__ import annotations

import click

from hub.cli.common import CliState, fmt_time, lan_option, pass_state
from hub.users.tokens import DEFAULT_DAYS, MAX_DAYS, create_token, list_tokens, revoke_token


@click.group("token")
def token_group() -> None:
    """API tokens: each acts as one user in one region."""


@token_group.command("create")
@click.option("--login", required=True, help="the user the token acts as")
@lan_option("the region the token is bound to")
@click.option("--label", default="", help="what the token is for (e.g. the system using it)")
@click.option(
    "--expires-days",
    type=click.IntRange(1, MAX_DAYS),
    default=DEFAULT_DAYS,
    show_default=True,
)
@pass_state
def create(state: CliState, login: str, lan: str, label: str, expires_days: int) -> None:
    """Create a token; it is printed this once, alone on stdout, and kept only as a hash."""
    issued = create_token(state.hub, state.actor, login, lan, label=label, days=expires_days)
    click.echo(
        f"token {issued.id} for {issued.login} in region {issued.lan} ({issued.label}), "
        f"expires {fmt_time(issued.expires_at)} UTC; shown this once:",
        err=True,
    )
    click.echo(issued.token)


@token_group.command("list")
@click.option("--login", help="only this user's tokens")
@pass_state
def list_command(state: CliState, login: str | None) -> None:
    """Every token (never the token itself)."""
    with state.hub.db.hub.connect() as connection:
        rows = list_tokens(connection, login)
    click.echo(
        f"{'id':>5} {'login':<16} {'län':<4} {'state':<8} {'expires':<19} {'last used':<19} label"
    )
    for t in rows:
        status = "revoked" if t.revoked_at else "active"
        click.echo(
            f"{t.id:>5} {t.login:<16} {t.lan:<4} {status:<8} {fmt_time(t.expires_at):<19} "
            f"{fmt_time(t.last_used_at):<19} {t.label}"
        )


@token_group.command("revoke")
@click.option("--id", "token_id", type=int, required=True)
@pass_state
def revoke(state: CliState, token_id: int) -> None:
    """Revoke a token: refused from the next request on."""
    revoke_token(state.hub, state.actor, token_id)
    click.echo(f"token {token_id} revoked")


COMMANDS = [token_group]
