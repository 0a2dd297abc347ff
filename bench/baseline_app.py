"""The inbound benchmark's baseline: parse safely, validate against the XSD, answer a fixed OK.

It does the least any producer of this contract must do, on the same server as the hub, so the
hub's figure can be read as a ratio that holds on a noisy shared machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hub.contract.names import SOAP11_ENV_NS
from hub.contract.serialise import build_response_envelope
from hub.contract.validate import schema
from hub.contract.xmlsafe import parse_untrusted

_OK = build_response_envelope("OK", None)
_BODY = f"{{{SOAP11_ENV_NS}}}Body"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Parse + XSD-validate the operation element, then answer OK (or 500 if invalid)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    envelope = parse_untrusted(environ["wsgi.input"].read(length))
    body = envelope.find(_BODY)
    valid = body is not None and len(body) and schema().validate(body[0])
    status = "200 OK" if valid else "500 Internal Server Error"
    start_response(
        status, [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(_OK)))]
    )
    return [_OK]
