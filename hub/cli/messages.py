"""``agenthub messages`` and ``agenthub sample``: a region's received messages, and a sample."""

from __future__ import annotations

import random

import click

from hub.cli.common import CliState, lan_option, pass_state
from hub.clock import swedish_today
from hub.contract.personnummer import generate
from hub.contract.samples import Scenario, sample_information
from hub.contract.serialise import build_request_envelope
from hub.inbound.views import list_messages
from hub.tenancy.access import Permission


@click.command("messages")
@lan_option()
@click.option("--limit", type=int, default=50, show_default=True)
@pass_state
def messages_command(state: CliState, lan: str, limit: int) -> None:
    """List one region's received messages, personnummer masked."""
    scope = state.scope(lan, Permission.READ_METADATA)
    rows = list_messages(scope, limit=limit)
    click.echo(f"{'received (UTC)':<20} {'id':<36} {'kind':<15} {'pnr':<15} {'code':<5} delivery")
    for m in rows:
        click.echo(
            f"{m.received_at:%Y-%m-%d %H:%M:%S} {m.id} {m.kind:<15} {m.masked_pnr:<15} "
            f"{m.result_code:<5} {m.delivery_state}"
        )


@click.command("sample")
@click.option("--lan", required=True, help="LogicalAddress: the receiving län code")
@click.option("--sender", default="05", show_default=True, help="the sending region's län code")
@click.option(
    "--scenario",
    default="move",
    show_default=True,
    type=click.Choice(["move", "sample", "treatment", "no_information"]),
)
@click.option("--seed", type=int, default=None, help="repeatable personnummer")
def sample_command(lan: str, sender: str, scenario: Scenario, seed: int | None) -> None:
    """Print a valid request with a synthetic personnummer, to post with any SOAP tool."""
    rng = random.Random(seed)  # noqa: S311 - synthetic test people, not secrets
    info = sample_information(
        scenario, pnr=generate(rng), sending_lan=sender, today=swedish_today()
    )
    click.echo(build_request_envelope(lan, info).decode("utf-8"), nl=False)


COMMANDS = [messages_command, sample_command]
