"""Routing of an inbound call: which member region a LogicalAddress (län code) belongs to."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date

from hub.contract.regions import LAN_CODE_RE
from hub.db import Database, read_once_more_if_lost
from hub.tenancy.registry import MemberRegion, get_region

# Registry changes reach every node within this many seconds without a query per call.
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Route:
    """The outcome of routing: a region, or a reason (for resultText) why there is none."""

    region: MemberRegion | None
    reason: str | None = None


class Router:
    """Looks up the member region for a län code, with a short cache shared by threads."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, MemberRegion | None]] = {}

    def _lookup(self, lan_code: str) -> MemberRegion | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(lan_code)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        region = read_once_more_if_lost(
            self._db.hub, lambda connection: get_region(connection, lan_code)
        )
        with self._lock:
            self._cache[lan_code] = (now, region)
        return region

    def invalidate(self, lan_code: str | None = None) -> None:
        """Forget cached lookups (after a registry change): of one region, or all."""
        with self._lock:
            if lan_code is None:
                self._cache.clear()
            else:
                self._cache.pop(lan_code, None)

    def route(self, logical_address: str | None, today: date) -> Route:
        """Route an inbound LogicalAddress; it must be a served län with an active agreement."""
        if logical_address is None or not LAN_CODE_RE.fullmatch(logical_address):
            return Route(None, "LogicalAddress must be a two-digit län code (logical address rule)")
        region = self._lookup(logical_address)
        if region is None:
            return Route(
                None,
                f"LogicalAddress {logical_address} is not served by this hub "
                "(logical address rule)",
            )
        if region.ended_at is not None:
            return Route(None, ended_reason(logical_address))
        if not region.is_active(today):
            return Route(
                None,
                f"LogicalAddress {logical_address}: the region's agreement is not active "
                "(logical address rule)",
            )
        return Route(region)


def ended_reason(lan_code: str) -> str:
    """The resultText of a call for a region whose agreement was ended (or key destroyed)."""
    return (
        f"LogicalAddress {lan_code}: the region's agreement has ended; the hub no longer "
        "receives for it (logical address rule)"
    )
