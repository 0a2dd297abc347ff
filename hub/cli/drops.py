"""``agenthub drops status | retry``: each region's drop, and ending a drop's backoff."""

from __future__ import annotations

import json

import click

from hub.cli.common import CliState, lan_option, pass_state
from hub.clock import utcnow
from hub.drops.state import reset
from hub.jobs.config import load_job_settings
from hub.ops.status import drops_status, format_status, status_json, workers_seen
from hub.tenancy.access import Permission


@click.group("drops")
def drops_group() -> None:
    """Region drops."""


@drops_group.command("status")
@click.option("--no-check", is_flag=True, help="show the recorded state; do not probe the drops")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@pass_state
def status(state: CliState, no_check: bool, as_json: bool) -> None:
    """Per region: reachable, last success, backlog (exit 1 when a drop is down)."""
    hub = state.hub
    rows = drops_status(hub, load_job_settings(), check=not no_check)
    workers = workers_seen(hub)
    if as_json:
        click.echo(json.dumps(status_json(rows, workers), indent=2, ensure_ascii=False))
    else:
        click.echo(format_status(rows, workers, utcnow()))
    # Non-zero when a drop is down, so monitoring can call this command as a check.
    if any(r.reachable is False for r in rows):
        raise click.exceptions.Exit(1)


@drops_group.command("retry")
@lan_option()
@pass_state
def retry(state: CliState, lan: str) -> None:
    """End a region's drop backoff now: the worker tries it on its next run."""
    state.scope(lan, Permission.OPERATE)
    reset(state.hub.db.hub, lan)
    click.echo(f"region {lan}: drop will be tried on the worker's next run")


COMMANDS = [drops_group]
