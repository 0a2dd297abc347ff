"""``agenthub ntjp-sim``: the local NTjP simulator."""

from __future__ import annotations

import os

import click

from hub.config import env_choice
from hub.logs import configure_logging
from hub.outbound.settings import SIM_DEFAULT_PORT
from hub.sim import run_sim


@click.command("ntjp-sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=SIM_DEFAULT_PORT, show_default=True)
@click.option("--config", help="routes TOML (see hub/sim/routes.example.toml)")
def sim_command(host: str, port: int, config: str | None) -> None:
    """Serve the NTjP simulator until interrupted."""
    level = env_choice(
        os.environ, "AGENTHUB_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
    )
    configure_logging(level.upper())
    run_sim(host, port, config)


COMMANDS = [sim_command]
