"""The inbound benchmark's baselines: parse safely, validate against the XSD, answer a fixed OK.

It does the least any producer of this contract must do, on the same server as the hub, so the
hub's figure can be read as a ratio that holds on a noisy shared machine.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import psycopg2

from hub.contract.names import SOAP11_ENV_NS
from hub.contract.serialise import build_response_envelope
from hub.contract.wsdl import schema
from hub.contract.xmlsafe import parse_untrusted

_OK = build_response_envelope("OK", None)
_BODY = f"{{{SOAP11_ENV_NS}}}Body"


def _answer(
    environ: dict[str, Any],
    start_response: Callable[..., Any],
    keep: Callable[[bytes], None] | None = None,
) -> Iterable[bytes]:
    # Parse + XSD-validate the operation element; hand a valid body to ``keep``; answer OK (or
    # 500 if invalid).
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(length)
    envelope = parse_untrusted(data)
    body = envelope.find(_BODY)
    valid = body is not None and len(body) and schema().validate(body[0])
    if valid and keep is not None:
        keep(data)
    status = "200 OK" if valid else "500 Internal Server Error"
    start_response(
        status, [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(_OK)))]
    )
    return [_OK]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Parse + XSD-validate the operation element, then answer OK (or 500 if invalid)."""
    return _answer(environ, start_response)


_local = threading.local()


def _connection() -> Any:
    # One connection per server thread, opened on first use (gthread workers reuse threads).
    connection = getattr(_local, "connection", None)
    if connection is None:
        url = os.environ["AGENTHUB_DATABASE_URL"].replace("postgresql+psycopg2://", "postgresql://")
        connection = _local.connection = psycopg2.connect(url)
    return connection


def _insert(data: bytes) -> None:
    connection = _connection()
    with connection, connection.cursor() as cursor:  # commits on leaving the block
        cursor.execute(
            "INSERT INTO bench_store (content_hash, body) VALUES (%s, %s) "
            "ON CONFLICT (content_hash) DO NOTHING",
            (hashlib.sha256(data).hexdigest(), data),
        )


def store_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The baseline plus the least a durable producer adds: one INSERT and a commit per call.

    A second yardstick, printed beside the first: how much of the hub's cost is storing at all
    (the content hash and the raw body, no rules, no encryption, no ORM).
    """
    return _answer(environ, start_response, _insert)


STORE_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_store (content_hash text PRIMARY KEY, body bytea NOT NULL, "
    "received_at timestamptz NOT NULL DEFAULT now())"
)
