"""What every answer of the web app carries: a request id, and the security headers.

- ``X-Request-Id``: a fresh id for every request, set in :data:`hub.audit.log.request_id` while
  the request is served, so every access-log entry it writes names it and a region can follow
  one request across its log. The hub makes its own: an id sent by a client is not believed.
- ``Content-Security-Policy``: ``default-src 'self'`` and nothing inline (no script, no style,
  no ``style=`` attributes), no framing (``frame-ancestors 'none'``), forms post only here.
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``, ``X-Frame-Options``
  for old browsers, ``Cross-Origin-Opener-Policy``, and ``Cache-Control: no-store`` on
  everything but static files (pages may show personal data; no browser or proxy keeps them).
- ``Strict-Transport-Security`` outside dev and test (in dev the hub is plain http).

TLS ends at the ingress, which says so in ``X-Forwarded-Proto``; :class:`TrustedProxyScheme`
believes it only from ``AGENTHUB_TRUSTED_PROXIES``. Behind it, requests count as HTTPS, so
Flask-WTF also checks that a form was posted from this very site (its strict ``Referer`` check).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request

from hub.audit.log import request_id
from hub.config import Settings
from hub.context import Hub
from hub.producer.identity import from_trusted_proxy

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

CSP = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"
REQUEST_ID_HEADER = "X-Request-Id"


def start_request() -> None:
    """Before anything else: give the request its id."""
    rid = uuid.uuid4().hex
    g.request_id = rid
    g.request_id_token = request_id.set(rid)


def end_request(_error: BaseException | None) -> None:
    """After the request: the id is no longer this thread's."""
    token = g.pop("request_id_token", None)
    if token is not None:
        request_id.reset(token)


def add_headers(hub: Hub, response: Response) -> Response:
    """Set the security headers and the request id on ``response``."""
    rid = g.get("request_id")
    if rid:
        response.headers[REQUEST_ID_HEADER] = rid
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.endpoint != "static":
        headers["Cache-Control"] = "no-store"
    if not hub.settings.is_dev:
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def install(app: Flask, hub: Hub) -> None:
    """Register the request id and the headers on ``app`` (first, so every answer has them)."""
    app.before_request_funcs.setdefault(None, []).insert(0, start_request)
    app.teardown_request(end_request)

    def after(response: Response) -> Any:
        return add_headers(hub, response)

    app.after_request(after)


class TrustedProxyScheme:
    """WSGI middleware: a request the ingress forwarded from HTTPS counts as HTTPS.

    Only the scheme is taken over, and only from a trusted proxy; the remote address stays the
    ingress's own (the SITHS sign-in checks it).
    """

    def __init__(self, app: WSGIApplication, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request."""
        forwarded = environ.get("HTTP_X_FORWARDED_PROTO", "")
        if forwarded.strip().lower() == "https" and from_trusted_proxy(
            self.settings, environ.get("REMOTE_ADDR")
        ):
            environ["wsgi.url_scheme"] = "https"
        return self.app(environ, start_response)
