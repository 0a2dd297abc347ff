"""One job run's use of a region's drop, with the backoff in one place.

Every job that talks to a region's drop (delivery of received files, extract pick-up, receipts,
the status probe) goes through :func:`region_drop`::

    with region_drop(hub, region, backoff) as session:
        if session.skipped:              # the drop is backing off: leave it alone this run
            return
        drop = session.open()            # connects; the first one also prepares the layout
        drop.write_atomic(...)           # a DropError here ends the block …
    if session.error:                    # … is recorded as the drop's failure, and kept here
        ...

Leaving the block without an error records a success (if a drop was opened at all); a
:class:`~hub.drops.base.DropError` raised inside it, or passed to :meth:`DropSession.fail`, is
recorded as a failure, which sets the backoff (:mod:`hub.drops.state`). Every connection the
session opened is closed at the end.
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Self

from hub.clock import utcnow
from hub.context import Hub
from hub.drops.base import Drop, DropError
from hub.drops.regional import drop_config_hash, drop_for_region
from hub.drops.state import Backoff, get_state, record_failure, record_success, state_allows
from hub.tenancy.registry import MemberRegion


class DropSession:
    """See the module docstring; made by :func:`region_drop`."""

    def __init__(
        self, hub: Hub, region: MemberRegion, backoff: Backoff, now: datetime | None = None
    ) -> None:
        self.hub = hub
        self.region = region
        self.backoff = backoff
        self.config_hash = drop_config_hash(region)
        self.error: DropError | None = None
        #: Why this run leaves the drop alone (it is backing off), or None.
        self.skipped: str | None = None
        self._drops: list[Drop] = []
        self._opened = False
        with hub.db.hub.connect() as connection:
            state = get_state(connection, region.lan_code)
        if not state_allows(state, self.config_hash, now or utcnow()):
            assert state is not None and state.next_attempt_at is not None
            self.skipped = f"backing off until {state.next_attempt_at.isoformat()}"

    def open(self) -> Drop:
        """One more connection to the drop; the first one is checked and gets its layout.

        A folder drop is created with its parents when missing (the hub owns the embedded
        default, and an operator who configured a path wants it used). An SFTP drop's base path
        must exist: the region's server decides where the account may write.
        """
        if self.skipped:
            raise RuntimeError("the drop is backing off; check session.skipped first")
        drop = drop_for_region(self.hub, self.region)
        self._drops.append(drop)
        if not self._opened:
            self._opened = True
            drop.ensure_layout()
            drop.check()
        return drop

    def fail(self, error: DropError) -> None:
        """Record ``error`` as the drop's failure (once per session; the first one counts)."""
        if self.error is None:
            self.error = error
            record_failure(
                self.hub.db.hub, self.region.lan_code, error, self.config_hash, self.backoff
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            for drop in self._drops:
                drop.close()
        finally:
            self._drops.clear()
        if isinstance(exc, DropError):
            self.fail(exc)
            return True
        if exc is None and self.error is None and self._opened:
            record_success(self.hub.db.hub, self.region.lan_code, self.config_hash)
        return False


def region_drop(
    hub: Hub, region: MemberRegion, backoff: Backoff, now: datetime | None = None
) -> DropSession:
    """A :class:`DropSession` for one job run on ``region``'s drop (``now``: the job's clock)."""
    return DropSession(hub, region, backoff, now)
