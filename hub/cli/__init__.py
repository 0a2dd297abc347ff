"""The ``agenthub`` command: one module per noun, joined here into one Click group.

Commands report a refusal as ``agenthub: <why>`` on stderr with a non-zero exit code (2 for a
bad request or configuration, 1 where the command says so); the hub they opened is closed at
the end whatever happens.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from hub.cli import (
    alerts,
    db,
    demo,
    drops,
    messages,
    outbox,
    region,
    serve,
    sim,
    token,
    user,
    worker,
)
from hub.cli.common import Refused
from hub.config import ConfigError
from hub.db import StoreMissing
from hub.tenancy.access import AccessError
from hub.tenancy.keys import KeyDestroyed
from hub.tenancy.registry import RegionError

# What a command may run into that is the request's or the configuration's fault, not a bug:
# one line on stderr. ValueError covers hub.tenancy.keys.Unreadable (data its key cannot open).
_REFUSALS = (ConfigError, RegionError, AccessError, KeyDestroyed, StoreMissing, ValueError)


class _Group(click.Group):
    """The root group: known refusals become one line on stderr, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except _REFUSALS as exc:
            # A LookupError's text is the repr of its argument: show the argument itself.
            text = exc.args[0] if isinstance(exc, LookupError) and exc.args else str(exc)
            raise Refused(str(text)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The agent hub: NTjP producer and consumer of ProcessCervixScreeningInformation."""


for module in (serve, db, region, user, token, messages, outbox, alerts, worker, drops, sim, demo):
    for command in module.COMMANDS:
        cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agenthub`` console script; returns the exit code."""
    try:
        # Without standalone mode, Click returns an Exit's code instead of calling sys.exit.
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="agenthub",
            standalone_mode=False,
        )
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
