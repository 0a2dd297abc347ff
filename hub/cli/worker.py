"""``agenthub worker``: the scheduler process (or the drop jobs once with ``--once``)."""

from __future__ import annotations

import click

from hub.cli.common import CliState, pass_state
from hub.db.migrate import upgrade_all
from hub.jobs.config import load_job_settings
from hub.jobs.worker import run_once, run_worker


@click.command("worker")
@click.option(
    "--once",
    is_flag=True,
    help="run the drop jobs once (probe, pick-up, delivery, retention) and exit; the senders "
    "run in the scheduler, or with `send --wait`",
)
@pass_state
def worker_command(state: CliState, once: bool) -> None:
    """Run the job scheduler (delivery, pick-up, senders, receipts, retention)."""
    job_settings = load_job_settings()
    hub = state.hub
    if state.settings.is_dev:
        # Like `serve`: the embedded default migrates itself; real environments migrate explicitly.
        upgrade_all(hub.db)
    if once:
        outcome = run_once(hub, job_settings)
        delivered = sum(r.delivered for r in outcome.deliver)
        archived = sum(r.archived for r in outcome.pickup)
        click.echo(f"delivered {delivered} message(s); archived {archived} extract(s)")
    else:
        run_worker(hub, job_settings)


COMMANDS = [worker_command]
