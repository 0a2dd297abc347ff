"""Liveness for the ingress and operators, and a machine-readable word on what this is."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from hub.contract.names import ENDPOINT_PATH
from hub.web.routes import public

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz() -> Any:
    """Liveness and database reachability, for the ingress and operators."""
    hub = current_app.extensions["agenthub"]
    try:
        with hub.db.hub.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok", env=hub.settings.env)


@bp.get("/service")
@public
def service() -> Any:
    """What this is and where the contract lives (the workspace itself is at ``/``)."""
    return jsonify(
        service="agenthub",
        contract="ProcessCervixScreeningInformation 1.0 (RIVTA BP 2.1)",
        endpoint=ENDPOINT_PATH,
        wsdl=f"{ENDPOINT_PATH}?wsdl",
    )
