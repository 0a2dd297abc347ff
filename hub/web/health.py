"""Liveness and the landing answer: what the ingress and a newcomer's first request see."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from hub.contract.names import ENDPOINT_PATH

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    """Liveness and database reachability, for the ingress and operators."""
    hub = current_app.extensions["agenthub"]
    try:
        with hub.db.hub.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok", env=hub.settings.env)


@bp.get("/")
def index() -> Any:
    """Where a newcomer lands: what this is and where the contract lives."""
    return jsonify(
        service="agenthub",
        contract="ProcessCervixScreeningInformation 1.0 (RIVTA BP 2.1)",
        endpoint=ENDPOINT_PATH,
        wsdl=f"{ENDPOINT_PATH}?wsdl",
    )
