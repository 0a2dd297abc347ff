"""The hub with its store taken out, for ``bench/inbound.py --without-store`` only.

Every step of a call runs as in the hub: the endpoint, the caller's identity, the safe parse,
Spyne, the XSD, the contract rules, routing, the canonical form, and the row with its seals and
keyed hashes. Only the group commit is replaced: the row is dropped and the call is answered as
if it had been stored. The gap between this app and the baseline is the contract work; the gap
between it and the hub is the storing.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from hub.context import Hub, build_hub
from hub.web.app import create_app, serving_app


class NoStore:
    """Takes the group commit's place and stores nothing (each row is answered as new)."""

    def announce(self) -> None:
        """Nothing waits for this call."""

    def withdraw(self) -> None:
        """Nothing waits for this call."""

    def insert(self, lan_code: str, row: dict[str, Any], key_ref: bytes | None = None) -> bool:
        """Drop the row; report it as newly stored."""
        return True

    def close(self) -> None:
        """Nothing to finish."""


def build_app(hub: Hub | None = None) -> Flask:
    """The serving app of ``hub.wsgi`` with the store replaced by :class:`NoStore`.

    gunicorn calls it as a factory (``bench.hub_nostore:build_app()``), so importing this module
    builds nothing. Without ``hub`` it builds the hub and serves it as ``hub.wsgi`` does; with
    one (a test's), it only builds the app.
    """
    serving = hub is None
    hub = hub or build_hub()
    # The group commit it replaces has not been used: it holds no connection to hand back.
    hub.inbound = NoStore()  # type: ignore[assignment]
    return serving_app(hub) if serving else create_app(hub)
