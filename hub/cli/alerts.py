"""``agenthub alerts``: the senders' operator alerts (no personal data), and acknowledging one."""

from __future__ import annotations

import click

from hub.cli.common import CliState, Failed, fmt_time, pass_state
from hub.ops.alerts import acknowledge_alert, list_alerts


@click.command("alerts")
@click.option("--lan", help="only this sending region")
@click.option("--all", "include_all", is_flag=True, help="include acknowledged alerts")
@click.option("--ack", type=int, metavar="ID", help="acknowledge an alert")
@click.option("--limit", type=int, default=50, show_default=True)
@pass_state
def alerts_command(
    state: CliState, lan: str | None, include_all: bool, ack: int | None, limit: int
) -> None:
    """List the senders' operator alerts, or acknowledge one."""
    hub = state.hub
    if ack is not None:
        if not acknowledge_alert(hub, ack, state.actor):
            raise Failed(f"no open alert {ack}")
        click.echo(f"alert {ack} acknowledged")
        return
    rows = list_alerts(hub, lan=lan, include_acknowledged=include_all, limit=limit)
    click.echo(f"{'id':>5} {'at (UTC)':<19} {'län':<3} {'to':<3} {'kind':<13} {'code':<12} record")
    for a in rows:
        acked = f" (ack {a.acknowledged_by})" if a.acknowledged_by else ""
        click.echo(
            f"{a.id:>5} {fmt_time(a.at)} {a.lan_code:<3} {a.to_lan or '-':<3} {a.kind:<13} "
            f"{a.code:<12} {a.record_id or '-'}{acked}\n      {a.detail}"
        )


COMMANDS = [alerts_command]
