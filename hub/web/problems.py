"""RFC 9457 problem details: how the JSON API (``/api/``) says that something went wrong."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str | None = None) -> Response:
    """An RFC 9457 problem details answer (``type`` is ``about:blank``: the status says it)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return Response(orjson.dumps(body), status=status, mimetype=PROBLEM_JSON)
