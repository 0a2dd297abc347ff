"""``agenthub demo``: a complete exchange on loopback with the demo regions."""

from __future__ import annotations

import click

from hub.cli.common import CliState, Refused, pass_state
from hub.demo import run_demo


@click.command("demo")
@click.option("--port", type=int, default=8080, show_default=True, help="the hub's port")
@click.option("--sim-port", type=int, default=8090, show_default=True, help="the simulator's")
@click.option("--once", is_flag=True, help="exit after the exchange")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="seconds to wait")
@pass_state
def demo_command(state: CliState, port: int, sim_port: int, once: bool, timeout: float) -> None:
    """Hub, worker and NTjP simulator with the demo regions; sends sample records."""
    settings = state.settings
    if not settings.is_dev:
        raise Refused("demo runs only with AGENTHUB_ENV=dev or test")
    code = run_demo(settings, port=port, sim_port=sim_port, once=once, timeout=timeout)
    if code:
        raise click.exceptions.Exit(code)


COMMANDS = [demo_command]
