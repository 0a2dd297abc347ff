"""``agenthub`` subcommands of the consumer side (send, ntjp-sim, demo)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add this side's subcommands to the ``agenthub`` subparsers ``sub``."""
    _ = (sub, argparse)
