"""The producer endpoint as a WSGI application: ``?wsdl``, and SOAP calls handed to Spyne.

Everything that must happen before an untrusted body reaches any parser or the database lives
here: the size cap, the caller's identity, and the one safe parse. Faults never carry a stack
trace or personal data, and every answer has a body.
"""

from __future__ import annotations

import logging
import posixpath
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from lxml import etree

from hub.context import Hub
from hub.contract.names import (
    ENDPOINT_PATH,
    HDR_CORRELATION_ID,
    HDR_ORIGINAL_CONSUMER,
)
from hub.contract.parse import MalformedRequest, MustUnderstand, parse_request
from hub.contract.serialise import build_fault_envelope
from hub.contract.wsdl import WSDL_FILE, wsdl_dir
from hub.contract.xmlsafe import parse_untrusted
from hub.inbound.store import CallMeta
from hub.producer.identity import identify
from hub.producer.spyne import (
    ENV_HUB,
    ENV_META,
    ENV_RAW,
    ENV_REQUEST,
    build_spyne_app,
)

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
_XML = "text/xml; charset=utf-8"

# A Host header is request data, and it is written into the WSDL: only a DNS name, an IPv4
# address or a bracketed IPv6 literal, with an optional port, is taken (RFC 9110 section 7.2).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE: Final = re.compile(
    rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]{{2,45}}\])(?::[0-9]{{1,5}})?"
)
_MAX_HOST_CHARS: Final = 260
# Documents kept, each for one address (a document and the address it was written for): a few
# files times the few names a real installation is reached by. Any other Host pushes out the
# least recently served, so distinct Host headers cannot grow the process.
MAX_CACHED_DOCUMENTS: Final = 64


def _wsgi_header(name: str) -> str:
    return "HTTP_" + name.upper().replace("-", "_")


def fault_response(
    start_response: StartResponse,
    faultcode: str,
    text: str,
    status: str = "500 Internal Server Error",
) -> list[bytes]:
    """Answer with a SOAP 1.1 Fault (HTTP 500 per SOAP 1.1; never an empty body)."""
    body = build_fault_envelope(faultcode, text)  # type: ignore[arg-type]
    start_response(status, [("Content-Type", _XML), ("Content-Length", str(len(body)))])
    return [body]


def _content_type_problem(content_type: str | None) -> str | None:
    """Why a request's Content-Type is not SOAP 1.1's ``text/xml``, or None if it is.

    A request without one is read as SOAP 1.1 (the body decides); one that says it is something
    else (SOAP 1.2's ``application/soap+xml``, JSON, a form) is refused before its body is read.
    The text never repeats what was sent.
    """
    if not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/xml":
        return None
    if media == "application/soap+xml":
        return "SOAP 1.2 (application/soap+xml) is not supported; send SOAP 1.1 as text/xml"
    return "the Content-Type of a SOAP 1.1 request must be text/xml"


class ContractDocuments:
    """Serves the contract's WSDL and schemas with the real endpoint address and resolvable imports.

    Every ``schemaLocation`` is rewritten to ``<endpoint>?xsd=<path>`` so a client that fetches
    ``?wsdl`` can follow the imports; only files inside ``wsdl/`` are ever served.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.files = {
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.suffix in (".wsdl", ".xsd")
        }

    def get(self, relative: str, endpoint_url: str) -> bytes | None:
        """The document at ``relative`` (inside wsdl/) as served from ``endpoint_url``."""
        if relative not in self.files:
            return None
        key = (relative, endpoint_url)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        tree = parse_untrusted((self.root / relative).read_bytes())
        here = posixpath.dirname(relative)
        for el in tree.iter(
            "{http://www.w3.org/2001/XMLSchema}import", "{http://www.w3.org/2001/XMLSchema}include"
        ):
            location = el.get("schemaLocation")
            if location:
                target = posixpath.normpath(posixpath.join(here, location))
                el.set("schemaLocation", f"{endpoint_url}?xsd={target}")
        for address in tree.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address"):
            address.set("location", endpoint_url)
        data: bytes = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > MAX_CACHED_DOCUMENTS:
                self._cache.popitem(last=False)
        return data

    def cached(self) -> int:
        """How many documents are kept (bounded by :data:`MAX_CACHED_DOCUMENTS`)."""
        with self._lock:
            return len(self._cache)


class ProducerEndpoint:
    """WSGI app mounted at the contract's endpoint path."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.spyne = build_spyne_app()
        self.documents = ContractDocuments(wsdl_dir())

    def endpoint_url(self, environ: dict[str, Any]) -> str | None:
        """The address clients should call: configured public URL, else the request's host.

        None when the Host header is not a host name or address (with a port) at all.
        """
        if self.hub.settings.public_url:
            return self.hub.settings.public_url.rstrip("/") + ENDPOINT_PATH
        scheme = "https" if environ.get("wsgi.url_scheme") == "https" else "http"
        host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
        if len(host) > _MAX_HOST_CHARS or not _HOST_RE.fullmatch(host):
            return None
        return f"{scheme}://{host.lower()}{ENDPOINT_PATH}"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "GET":
            return self._documents(environ, start_response)
        if method != "POST":
            start_response(
                "405 Method Not Allowed", [("Allow", "GET, POST"), ("Content-Type", "text/plain")]
            )
            return [b"use POST for SOAP calls, GET ?wsdl for the contract\n"]
        return self._call(environ, start_response)

    def _documents(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        query = environ.get("QUERY_STRING", "")
        relative = None
        if query.lower() == "wsdl":
            relative = WSDL_FILE
        elif query.startswith("xsd="):
            relative = query[4:]
        endpoint_url = self.endpoint_url(environ)
        if endpoint_url is None:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"the Host header is not a host name or address\n"]
        data = self.documents.get(relative, endpoint_url) if relative else None
        if data is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: GET ?wsdl for the contract\n"]
        start_response("200 OK", [("Content-Type", _XML), ("Content-Length", str(len(data)))])
        return [data]

    def _read_body(self, environ: dict[str, Any]) -> bytes | None:
        cap = self.hub.settings.max_body_bytes
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length > cap:
            return None  # refused without reading a byte of it
        stream = environ["wsgi.input"]
        data: bytes = stream.read(length) if length >= 0 else stream.read(cap + 1)
        return None if len(data) > cap else data

    def _call(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        refused = _content_type_problem(environ.get("CONTENT_TYPE"))
        if refused:
            return fault_response(start_response, "soap:Client", refused)
        try:
            body = self._read_body(environ)
        except OSError:
            # The client went away, or did not send its body within the server's read deadline
            # (hub/web/gthread.py): nothing to parse; answer in case anyone still listens.
            return fault_response(
                start_response, "soap:Client", "The request body was not received in full in time"
            )
        if body is None:
            cap = self.hub.settings.max_body_bytes
            return fault_response(
                start_response, "soap:Client", f"The request body exceeds {cap} bytes"
            )
        settings = self.hub.settings
        caller = identify(
            settings,
            environ.get("REMOTE_ADDR", ""),
            environ.get(_wsgi_header(settings.cert_header)),
        )
        if caller.refused:
            return fault_response(start_response, "soap:Client", caller.refused)
        try:
            request = parse_request(body, settings.max_body_bytes)
        except MustUnderstand as exc:
            return fault_response(start_response, "soap:MustUnderstand", str(exc))
        except MalformedRequest as exc:
            return fault_response(start_response, "soap:Client", str(exc))
        environ[ENV_REQUEST] = request
        environ[ENV_RAW] = body
        environ[ENV_HUB] = self.hub
        environ[ENV_META] = CallMeta(
            sender_hsaid=caller.hsa_id,
            original_consumer_hsaid=environ.get(_wsgi_header(HDR_ORIGINAL_CONSUMER)),
            correlation_id=environ.get(_wsgi_header(HDR_CORRELATION_ID)),
        )
        status, answer = self.spyne.dispatch(environ)
        start_response(status, [("Content-Type", _XML), ("Content-Length", str(len(answer)))])
        return [answer]
