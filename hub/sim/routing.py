"""Look-ups in the routing table (vägval) and the authorisation table (anropsbehörighet).

Matching is case-insensitive but never trims: the platform treats ``" 01"`` as a different address
from ``"01"``, and a consumer that pads its address must see VP004 here before it sees it in SIT.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from hub.sim.config import ANY, Authorisation, Route
from hub.sim.faults import VpCode, VpFault

# Fallback order of the platform (docs/contract.md).
_ROUTE_FALLBACK = ("", "SE", "*")  # "" stands for the exact address
_AUTH_FALLBACK = ("", "*", "SE")


def _key(value: str) -> str:
    return value.casefold()


class RoutingTable:
    """An immutable, indexed view of the routes; safe to share between threads."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._by_key: dict[tuple[str, str], list[Route]] = defaultdict(list)
        for route in routes:
            self._by_key[(_key(route.logical_address), _key(route.contract))].append(route)

    def _valid(self, address: str, contract: str, now: datetime) -> list[Route]:
        entries = self._by_key.get((_key(address), _key(contract)), [])
        return [r for r in entries if r.valid_at(now)]

    def resolve(self, logical_address: str, contract: str, now: datetime) -> Route:
        """Return the one route for the call, falling back exact → ``SE`` → ``*``.

        Within one address an entry for the exact contract wins over a ``"*"`` contract entry.
        Raises :class:`VpFault` VP004 when nothing matches and VP006 when two entries do.
        """
        for fallback in _ROUTE_FALLBACK:
            address = fallback or logical_address
            for contract_key in (contract, ANY):
                found = self._valid(address, contract_key, now)
                if len(found) > 1:
                    raise VpFault(
                        VpCode.VP006,
                        f"More than one route found for serviceNamespace: {contract}, "
                        f"receiverId: {logical_address} (matched as {address!r})",
                    )
                if found:
                    return found[0]
        raise VpFault(
            VpCode.VP004,
            f"No route (vägval) found for serviceNamespace: {contract}, "
            f"receiverId: {logical_address!r}",
        )


class AuthorisationTable:
    """An immutable view of the authorisations; safe to share between threads."""

    def __init__(self, authorisations: Iterable[Authorisation]) -> None:
        self._entries = tuple(authorisations)

    @staticmethod
    def _matches(entry: Authorisation, consumer: str, contract: str, address: str) -> bool:
        return (
            _key(entry.consumer_hsaid) in (_key(consumer), ANY)
            and _key(entry.contract) in (_key(contract), ANY)
            and _key(entry.logical_address) == _key(address)
        )

    def check(self, consumer: str, contract: str, logical_address: str, now: datetime) -> None:
        """Pass if ``consumer`` may call ``logical_address`` via ``contract``; else VP007.

        Fallback order exact → ``*`` → ``SE``, as the platform does.
        """
        for fallback in _AUTH_FALLBACK:
            address = fallback or logical_address
            if any(
                e.valid_at(now) and self._matches(e, consumer, contract, address)
                for e in self._entries
            ):
                return
        raise VpFault(
            VpCode.VP007,
            f"Authorization missing for serviceNamespace: {contract}, "
            f"receiverId: {logical_address!r}, senderId: {consumer}",
        )

    def addresses_for(self, consumer: str, contract: str, now: datetime) -> list[str]:
        """Return the logical addresses ``consumer`` may call via ``contract`` (for discovery)."""
        seen: dict[str, None] = {}
        for entry in self._entries:
            if (
                entry.valid_at(now)
                and _key(entry.consumer_hsaid) in (_key(consumer), ANY)
                and _key(entry.contract) in (_key(contract), ANY)
            ):
                seen.setdefault(entry.logical_address, None)
        return list(seen)


__all__ = ["AuthorisationTable", "RoutingTable"]
