"""``agenthub serve``: the SOAP producer and the web app."""

from __future__ import annotations

import click

from hub.cli.common import Refused
from hub.web.server import ServeError, serve


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="gunicorn workers; 0 = one threaded development server (default in dev and test; "
    "elsewhere 4 workers)",
)
def serve_command(host: str, port: int, workers: int | None) -> None:
    """Serve the producer and the web app: gunicorn, or in dev and test werkzeug's server."""
    try:
        serve(host, port, workers=workers)
    except ServeError as exc:
        raise Refused(f"serve: {exc}") from None


COMMANDS = [serve_command]
