"""The simulator's router: a WSGI app that behaves like NTjP's SKLTP VP for any contract.

One request walks: IP allow-list (VP011) → caller's HSA-id (VP002) → original-consumer header
rights (VP013) → routing loop (VP014) → safe parse (VP015) → logical address (VP003) → routing
table (VP004/VP006) → authorisation table (VP007) → producer, over HTTP or the in-process mock
(VP009 on timeout, unreachable, non-SOAP error or empty body). The producer's 200 answer and its
500 + SOAP Fault are passed back byte for byte. The timeout is the whole call's, as the
platform's is: a producer that trickles its answer gets VP009 at the timeout like a silent one
(:mod:`hub.outbound.deadline`).

The app holds no per-request state; the tables are immutable and the outbound HTTP sessions come
from a pool, so one instance serves any number of threads.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote
from xml.sax.saxutils import escape

import requests
from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree  # type: ignore[import-untyped, unused-ignore]
from werkzeug.wrappers import Request, Response

from hub.contract.names import (
    HDR_CORRELATION_ID,
    HDR_ORIGINAL_CONSUMER,
    HDR_PRT,
    SOAP11_ENV_NS,
)
from hub.contract.xmlsafe import UnsafeXml, parse_untrusted
from hub.outbound.deadline import Deadlines, guarded_session
from hub.sim.config import ANY, MOCK_SCHEME, Route, SimConfig, validate_sim_config
from hub.sim.faults import CONTENT_TYPE_XML, VpCode, VpFault, fault_body, soap_fault
from hub.sim.mock import MOCK_PATH, MockOptions, MockProducer, MockReply, parse_mock_url
from hub.sim.routing import AuthorisationTable, RoutingTable

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# One line per call, without the message body: the body may hold personal data, the rest is what a
# region rehearsing needs to see (who, which address, where it went, how it ended).
log = logging.getLogger(__name__)

#: Headers the platform sets towards the producer, besides the RIV-TA ones (as SKLTP VP does).
HDR_VP_SENDER_ID: Final = "x-vp-sender-id"
HDR_VP_INSTANCE_ID: Final = "x-vp-instance-id"

#: Service discovery, answered by the simulator itself from the authorisation table.
DISCOVERY_NS: Final = (
    "urn:riv:infrastructure:itintegration:registry:GetLogicalAddresseesByServiceContractResponder:2"
)
_DISCOVERY_REQUEST: Final = f"{{{DISCOVERY_NS}}}GetLogicalAddresseesByServiceContract"
_ENVELOPE: Final = f"{{{SOAP11_ENV_NS}}}Envelope"
_HEADER: Final = f"{{{SOAP11_ENV_NS}}}Header"
_BODY: Final = f"{{{SOAP11_ENV_NS}}}Body"
_FAULT: Final = f"{{{SOAP11_ENV_NS}}}Fault"
_PEM_BEGIN: Final = "-----BEGIN CERTIFICATE-----"
_PEM_END: Final = "-----END CERTIFICATE-----"


def hsaid_from_escaped_pem(value: str) -> str:
    """Return the subject ``serialNumber`` of a URL-escaped PEM certificate (nginx's format).

    Tolerates the variants ingresses produce (escaped or not, newlines turned into spaces or tabs).
    Raises :class:`VpFault` VP002 when the certificate is unreadable or has no serialNumber.
    """
    text = unquote(value)
    start, end = text.find(_PEM_BEGIN), text.find(_PEM_END)
    if start < 0 or end < start:
        raise VpFault(VpCode.VP002, "No sender ID (SERIALNUMBER) found: certificate is not PEM")
    # Rebuild a canonical PEM: some ingresses fold the newlines into spaces.
    b64 = "".join(text[start + len(_PEM_BEGIN) : end].split())
    pem = f"{_PEM_BEGIN}\n{b64}\n{_PEM_END}\n".encode()
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise VpFault(
            VpCode.VP002, "No sender ID (SERIALNUMBER) found: certificate is unreadable"
        ) from None
    serials = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    value_ = str(serials[0].value) if serials else ""
    if not value_:
        raise VpFault(VpCode.VP002, "No sender ID (SERIALNUMBER) found in certificate subject")
    return value_


def logical_address_of(envelope: etree._Element) -> str | None:
    """Return the text of the first SOAP header element whose local name is ``LogicalAddress``.

    Not trimmed, on purpose: the platform routes on the exact text. ``None`` when absent or empty.
    """
    header = envelope.find(_HEADER)
    if header is None:
        return None
    for element in header.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname == "LogicalAddress":
            return element.text or None
    return None


def _first_body_child(envelope: etree._Element) -> etree._Element | None:
    body = envelope.find(_BODY)
    if body is None:
        return None
    for child in body:
        if isinstance(child.tag, str):
            return child
    return None


class _SessionPool:
    """Reusable ``requests`` sessions, one borrower at a time.

    A pool rather than a thread-local: werkzeug's threaded server starts a thread per request, so a
    thread-local session would never be reused (no keep-alive) and would leak sockets until GC.
    """

    def __init__(self, factory: Callable[[], requests.Session]) -> None:
        self._factory = factory
        self._idle: queue.SimpleQueue[requests.Session] = queue.SimpleQueue()
        self._closed = False

    @contextmanager
    def session(self) -> Iterator[requests.Session]:
        try:
            session = self._idle.get_nowait()
        except queue.Empty:
            session = self._factory()
        try:
            yield session
        finally:
            if self._closed:
                session.close()
            else:
                self._idle.put(session)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class SimApp:
    """The simulator as a WSGI application (see the module docstring). Call :meth:`close` at end."""

    def __init__(self, config: SimConfig, *, clock: Callable[[], datetime] | None = None) -> None:
        validate_sim_config(config)
        self.config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        routes = config.effective_routes()
        self._routes = RoutingTable(routes)
        self._auths = AuthorisationTable(config.effective_authorisations())
        # Parse every mock URL now, so a typo fails at start-up rather than on the first call.
        self._mock_options = {r.url: parse_mock_url(r.url) for r in routes if _is_mock(r.url)}
        self._mock = MockProducer(config.mock_delay_s)
        self._allow = [ipaddress.ip_network(a, strict=False) for a in config.ip_allow_list]
        self._original_allowed = {c.casefold() for c in config.original_consumer_allowed}
        self._sessions = _SessionPool(self._new_session)
        self._deadlines = Deadlines()

    def _new_session(self) -> requests.Session:
        session = guarded_session()
        # Loopback producers must never go through an HTTP(S)_PROXY from the environment.
        session.trust_env = False
        session.verify = self.config.tls_ca_bundle or True
        if self.config.tls_client_cert:
            session.cert = (self.config.tls_client_cert, self.config.tls_client_key)
        return session

    def close(self) -> None:
        """Close the pooled outbound connections."""
        self._sessions.close()
        self._deadlines.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        """Answer one request (public for tests that want to skip the HTTP layer)."""
        if request.path.rstrip("/") == MOCK_PATH:
            return self._serve_mock(request)
        if request.method != "POST":
            return Response(
                f"NTjP simulator [{self.config.instance_id}]: POST SOAP 1.1 requests here.\n",
                200 if request.method in ("GET", "HEAD") else 405,
                content_type="text/plain; charset=utf-8",
                headers={"Allow": "GET, HEAD, POST"},
            )
        correlation_id = request.headers.get(HDR_CORRELATION_ID) or str(uuid.uuid4())
        try:
            response = self._route(request, correlation_id)
        except VpFault as fault:
            log.warning("%s %s (correlation id %s)", fault.code.name, fault.detail, correlation_id)
            response = Response(
                fault_body(fault, self.config.instance_id), 500, content_type=CONTENT_TYPE_XML
            )
        response.headers[HDR_CORRELATION_ID] = correlation_id
        return response

    # -- the steps ---------------------------------------------------------------------------

    def _check_ip(self, request: Request) -> None:
        if not self._allow:
            return
        try:
            address = ipaddress.ip_address(request.remote_addr or "")
        except ValueError:
            address = None
        if address is None or not any(address in network for network in self._allow):
            raise VpFault(
                VpCode.VP011,
                "Caller was not on the white list of accepted IP-addresses. "
                f"IP-address: {request.remote_addr}",
            )

    def _consumer(self, request: Request) -> str:
        if self.config.cert_header:
            escaped_pem = request.headers.get(self.config.cert_header)
            if escaped_pem:
                return hsaid_from_escaped_pem(escaped_pem)
        if self.config.dev_consumer_header:
            hsaid = request.headers.get(self.config.dev_consumer_header)
            if hsaid:
                return hsaid
        raise VpFault(VpCode.VP002, "No sender ID (SERIALNUMBER) found in certificate")

    def _check_original_consumer(self, request: Request, consumer: str) -> None:
        if HDR_ORIGINAL_CONSUMER not in request.headers:
            return
        if ANY in self._original_allowed or consumer.casefold() in self._original_allowed:
            return
        raise VpFault(
            VpCode.VP013,
            f"Sender {consumer} is not approved to set header {HDR_ORIGINAL_CONSUMER}",
        )

    def _history(self, request: Request) -> list[str]:
        raw = request.headers.get(self.config.routing_history_header, "")
        history = [hop.strip() for hop in raw.split(",") if hop.strip()]
        if self.config.instance_id in history:
            raise VpFault(
                VpCode.VP014,
                f"Routing loop: this platform ({self.config.instance_id}) is already in "
                f"{self.config.routing_history_header}: {raw}",
            )
        return history

    def _read_envelope(self, request: Request) -> tuple[bytes, etree._Element]:
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise VpFault(VpCode.VP015, f"Message is larger than {limit} bytes")
        data = request.stream.read(limit + 1)
        try:
            envelope = parse_untrusted(data, limit)
        except UnsafeXml as exc:
            raise VpFault(VpCode.VP015, f"Message could not be parsed: {exc}") from None
        if envelope.tag != _ENVELOPE:
            raise VpFault(VpCode.VP015, "Message is not a SOAP 1.1 envelope")
        return data, envelope

    def _route(self, request: Request, correlation_id: str) -> Response:
        self._check_ip(request)
        consumer = self._consumer(request)
        self._check_original_consumer(request, consumer)
        history = self._history(request)
        data, envelope = self._read_envelope(request)
        payload = _first_body_child(envelope)
        if payload is None:
            raise VpFault(VpCode.VP015, "Message has no element in soap:Body")
        if payload.tag == _DISCOVERY_REQUEST:
            return self._discovery(payload)
        address = logical_address_of(envelope)
        if address is None:
            raise VpFault(VpCode.VP003, "No receiverId (logical address) found in message header")
        contract = etree.QName(payload).namespace or ""
        now = self._clock()
        route = self._routes.resolve(address, contract, now)
        self._auths.check(consumer, contract, address, now)

        headers = {
            "Content-Type": request.headers.get("Content-Type", CONTENT_TYPE_XML),
            HDR_ORIGINAL_CONSUMER: request.headers.get(HDR_ORIGINAL_CONSUMER, consumer),
            HDR_CORRELATION_ID: correlation_id,
            HDR_VP_SENDER_ID: consumer,
            HDR_VP_INSTANCE_ID: self.config.instance_id,
            self.config.routing_history_header: ",".join([*history, self.config.instance_id]),
            # The answer is passed back byte for byte, so ask for it uncompressed.
            "Accept-Encoding": "identity",
        }
        if "SOAPAction" in request.headers:
            headers["SOAPAction"] = request.headers["SOAPAction"]
        if self.config.platform_hsaid_header:
            headers[self.config.platform_hsaid_header] = self.config.platform_hsaid

        timeout = route.timeout_s if route.timeout_s is not None else self.config.read_timeout_s
        if _is_mock(route.url):
            status, body, content_type, prt = self._call_mock(
                data, envelope, self._mock_options[route.url], timeout
            )
        else:
            status, body, content_type, prt = self._call_http(route, data, headers, timeout)
        log.info(
            "routed %s → %r via %s to %s: HTTP %d in %d ms (correlation id %s)",
            consumer,
            address,
            contract,
            route.url,
            status,
            prt,
            correlation_id,
        )
        response = Response(body, status, content_type=content_type)
        response.headers[HDR_PRT] = str(prt)
        return response

    # -- producers ----------------------------------------------------------------------------

    def _call_mock(
        self, data: bytes, envelope: etree._Element, options: MockOptions, timeout: float
    ) -> tuple[int, bytes, str, int]:
        started = time.monotonic()
        reply = self._mock.answer(data, envelope, options)
        if reply.delay_s > timeout:
            # Behave like a producer that does not answer in time: wait out the timeout, then VP009.
            time.sleep(timeout)
            raise VpFault(
                VpCode.VP009,
                f"Timeout when waiting on response from producer at address {MOCK_SCHEME} "
                f"(read timeout {timeout} s)",
            )
        if reply.delay_s:
            time.sleep(reply.delay_s)
        prt = _ms_since(started)
        return reply.status, reply.body, CONTENT_TYPE_XML, prt

    def _call_http(
        self, route: Route, data: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, bytes, str, int]:
        url = route.url
        timed_out = VpFault(
            VpCode.VP009,
            f"Timeout when waiting on response from producer at address {url} "
            f"(timeout {timeout} s)",
        )
        with self._sessions.session() as session:
            for attempt in (1, 2):
                started = time.monotonic()
                # The whole call, connect to the answer's last byte, within the timeout: the
                # read timeout alone bounds each wait, and a producer trickling a byte at a time
                # would hold the call (and the consumer) for as long as it liked.
                with self._deadlines.call(timeout) as guard:
                    try:
                        answer = session.post(
                            url,
                            data=data,
                            headers=headers,
                            timeout=(self.config.connect_timeout_s, timeout),
                            allow_redirects=False,
                        )
                        break
                    except requests.ConnectionError as exc:
                        if guard.expired:
                            raise timed_out from None
                        # The platform retries once, after a pause, on socket errors only;
                        # producers must be idempotent for exactly this reason (docs/contract.md).
                        if attempt == 2:
                            raise VpFault(
                                VpCode.VP009,
                                f"Error connecting to service producer at address {url} "
                                f"(after one retry): {type(exc).__name__}",
                            ) from None
                    except requests.Timeout:
                        raise timed_out from None
                    except requests.RequestException as exc:
                        if guard.expired:
                            raise timed_out from None
                        raise VpFault(
                            VpCode.VP009,
                            f"Error connecting to service producer at address {url}: "
                            f"{type(exc).__name__}",
                        ) from None
                time.sleep(self.config.retry_pause_s)
        prt = _ms_since(started)
        body = answer.content
        content_type = answer.headers.get("Content-Type", CONTENT_TYPE_XML)
        if not body:
            raise VpFault(
                VpCode.VP009,
                f"Empty response from service producer at address {url} "
                f"(HTTP {answer.status_code})",
            )
        if answer.status_code == 200:
            return 200, body, content_type, prt
        if answer.status_code == 500 and _is_soap_fault(body, self.config.max_body_bytes):
            return 500, body, content_type, prt
        raise VpFault(
            VpCode.VP009,
            f"Error from service producer at address {url}: HTTP {answer.status_code} "
            "without a SOAP Fault",
        )

    # -- services the simulator answers itself ------------------------------------------------

    def _discovery(self, payload: etree._Element) -> Response:
        consumer = (payload.findtext(f"{{{DISCOVERY_NS}}}serviceConsumerHsaId") or "").strip()
        contract = (payload.findtext(f"{{{DISCOVERY_NS}}}serviceContractNameSpace") or "").strip()
        addresses = self._auths.addresses_for(consumer, contract, self._clock())
        records = "".join(
            f"<d:logicalAddressRecord><d:logicalAddress>{escape(a)}</d:logicalAddress>"
            "</d:logicalAddressRecord>"
            for a in addresses
        )
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<soap:Envelope xmlns:soap="{SOAP11_ENV_NS}"><soap:Header/><soap:Body>'
            f'<d:GetLogicalAddresseesByServiceContractResponse xmlns:d="{DISCOVERY_NS}">'
            f"{records}</d:GetLogicalAddresseesByServiceContractResponse>"
            f"</soap:Body></soap:Envelope>"
        ).encode()
        return Response(body, 200, content_type=CONTENT_TYPE_XML)

    def _serve_mock(self, request: Request) -> Response:
        """The mock over HTTP (for routes that must be a real URL); no platform checks."""
        if request.method != "POST":
            return Response("mock producer: POST here\n", 405, headers={"Allow": "POST"})
        try:
            options = parse_mock_url("mock:?" + request.query_string.decode("ascii", "replace"))
            data = request.stream.read(self.config.max_body_bytes + 1)
            envelope = parse_untrusted(data, self.config.max_body_bytes)
        except (ValueError, UnsafeXml) as exc:
            return Response(
                soap_fault("soap:Client", "Mock producer: unreadable request", str(exc)),
                500,
                content_type=CONTENT_TYPE_XML,
            )
        reply: MockReply = self._mock.answer(data, envelope, options)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        return Response(reply.body, reply.status, content_type=CONTENT_TYPE_XML)


def _is_mock(url: str) -> bool:
    return url.startswith(MOCK_SCHEME)


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _is_soap_fault(body: bytes, max_bytes: int) -> bool:
    try:
        envelope = parse_untrusted(body, max_bytes)
    except UnsafeXml:
        return False
    if envelope.tag != _ENVELOPE:
        return False
    payload = _first_body_child(envelope)
    return payload is not None and payload.tag == _FAULT


def create_sim_app(config: SimConfig, *, clock: Callable[[], datetime] | None = None) -> SimApp:
    """Return the simulator as a WSGI application (a :class:`SimApp`; call ``close()`` at end).

    ``clock`` returns the aware "now" used for validity windows; tests may pin it.
    """
    return SimApp(config, clock=clock)


__all__ = [
    "DISCOVERY_NS",
    "HDR_VP_INSTANCE_ID",
    "HDR_VP_SENDER_ID",
    "SimApp",
    "create_sim_app",
    "hsaid_from_escaped_pem",
    "logical_address_of",
]
