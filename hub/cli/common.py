"""What every ``agenthub`` command shares: the hub (built once, closed at the end), the actor,
län code arguments, and one way to report a refused command."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import update_wrapper
from typing import Any, Concatenate, ParamSpec, TypeVar

import click

from hub.config import Settings, load_settings
from hub.context import Hub, build_hub
from hub.tenancy.access import Actor, Permission, RegionScope, cli_actor, region_scope

P = ParamSpec("P")
R = TypeVar("R")


class CliState:
    """The root context's object: settings and a hub, each made on first use."""

    def __init__(self, ctx: click.Context) -> None:
        self._ctx = ctx
        self._settings: Settings | None = None
        self._hub: Hub | None = None
        self.actor: Actor = cli_actor()

    @property
    def settings(self) -> Settings:
        """The hub's settings from the environment (checked once)."""
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def hub(self) -> Hub:
        """The hub's services, closed when the command ends (whatever way it ends)."""
        if self._hub is None:
            self._hub = build_hub(self.settings)
            self._ctx.call_on_close(self._hub.close)
        return self._hub

    def scope(self, lan: str, permission: Permission) -> RegionScope:
        """Region ``lan``'s scope for the operator at the shell (a missing region is refused)."""
        return region_scope(self.hub, self.actor, lan, permission)


def state() -> CliState:
    """The current invocation's :class:`CliState`."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState(root)
    return root.obj


def pass_state(fn: Callable[Concatenate[CliState, P], R]) -> Callable[P, R]:
    """Give a command its :class:`CliState` as first argument."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return fn(state(), *args, **kwargs)

    return update_wrapper(wrapper, fn)


class Refused(click.ClickException):
    """A command that cannot be done as asked: ``agenthub: <why>`` on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        """Print the message as ``agenthub: …`` to stderr."""
        click.echo(f"agenthub: {self.format_message()}", err=True, file=file or sys.stderr)


class Failed(Refused):
    """The command ran and what it tried failed (a record refused, nothing to resend): exit 1."""

    exit_code = 1


F = TypeVar("F", bound=Callable[..., Any])


def lan_option(help_text: str = "the member region's two-digit län code") -> Callable[[F], F]:
    """The ``--lan NN`` option every region command takes."""
    return click.option("--lan", required=True, metavar="NN", help=help_text)


def fmt_time(value: Any) -> str:
    """A time for a table column; ``-`` when there is none."""
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"
