"""Jobs of the consumer side, registered into the worker's scheduler."""

from __future__ import annotations

from typing import Any

from hub.context import Hub


def register_jobs(scheduler: Any, hub: Hub) -> None:
    """Add the consumer's jobs (senders, receipts) to ``scheduler``."""
