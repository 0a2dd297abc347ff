"""``agenthub db upgrade``: migrate the hub schema and every region's store."""

from __future__ import annotations

import click

from hub.cli.common import CliState, pass_state
from hub.db.migrate import upgrade_all


@click.group("db")
def db_group() -> None:
    """The hub's database."""


@db_group.command("upgrade")
@pass_state
def upgrade(state: CliState) -> None:
    """Migrate the hub schema and every region's store."""
    done = upgrade_all(state.hub.db)
    click.echo(f"hub schema at head; {len(done)} region store(s) at head: {' '.join(done) or '-'}")


COMMANDS = [db_group]
