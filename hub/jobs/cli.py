"""``agenthub`` subcommands of the job runner and drops (worker, drops status)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add this side's subcommands to the ``agenthub`` subparsers ``sub``."""
    _ = sub
