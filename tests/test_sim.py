"""The NTjP simulator over real HTTP on loopback: faults, routing, headers, producers, mock.

Every test starts the simulator (werkzeug, port 0) and, where a producer is needed, a tiny fake
producer on loopback. Personnummer are synthetic: generated from the test birth date 1912-12-12
with a valid check digit; the magic mock numbers are the simulator's own.
"""

from __future__ import annotations

import dataclasses
import pathlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree  # type: ignore[import-untyped, unused-ignore]
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from hub.contract.names import (
    CORE_NS,
    HDR_CORRELATION_ID,
    HDR_ORIGINAL_CONSUMER,
    HDR_PRT,
    ITR_NS,
    PERSON_ID_ROOT,
    RESPONDER_NS,
    SOAP11_ENV_NS,
    SOAP_ACTION,
)
from hub.sim import (
    LOAD_MOCKS,
    MOCK_PATH,
    MOCK_PNR_DELAY,
    MOCK_PNR_ERROR,
    MOCK_PNR_FAULT,
    MOCK_PNR_INFO,
    Authorisation,
    Route,
    RunningSim,
    SimConfig,
    SimConfigError,
    VpCode,
    create_sim_app,
    default_sim_config,
    load_sim_config,
    serve_sim_in_thread,
)
from hub.sim.app import DISCOVERY_NS
from hub.sim.config import sim_config_from_mapping
from tests.conftest import TricklingServer, http_head
from tests.sshd import free_port

INSTANCE = "NTjP TEST"
CONSUMER = "SE2321000131-TEST1"
DEV_HEADER = "x-sim-consumer-hsaid"
OTHER_NS = "urn:riv:clinicalprocess:activity:request:ProcessRequestResponder:1"


# -- synthetic data ---------------------------------------------------------------------------


def luhn_digit(nine: str) -> str:
    """Return the check digit over nine digits (weights 2, 1, 2, …)."""
    total = 0
    for i, char in enumerate(nine):
        product = int(char) * (2 if i % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return str((10 - total % 10) % 10)


def synthetic_pnr(n: int) -> str:
    """A valid-looking synthetic personnummer of a woman born on the test date 1912-12-12."""
    birth_number = f"{(n % 45) * 2 + 10:03d}"  # 010…098, even last digit: a woman
    nine = "121212" + birth_number
    return "19" + nine + luhn_digit(nine)


def soap_request(
    address: str | None = "01",
    *,
    pnr: str | None = None,
    namespace: str = RESPONDER_NS,
    extra_header: str = "",
) -> bytes:
    """A ProcessCervixScreeningInformation envelope (or the same shape in another namespace)."""
    header = extra_header
    if address is not None:
        header += f"<itr:LogicalAddress>{address}</itr:LogicalAddress>"
    pnr = pnr or synthetic_pnr(1)
    return (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP11_ENV_NS}" xmlns:itr="{ITR_NS}" '
        f'xmlns:r="{namespace}" xmlns:c="{CORE_NS}">'
        f"<soapenv:Header>{header}</soapenv:Header><soapenv:Body>"
        f"<r:ProcessCervixScreeningInformation><r:cervixScreeningInformation>"
        f"<c:subjectOfCare><c:personId><c:root>{PERSON_ID_ROOT}</c:root>"
        f"<c:extension>{pnr}</c:extension></c:personId></c:subjectOfCare>"
        f"</r:cervixScreeningInformation></r:ProcessCervixScreeningInformation>"
        f"</soapenv:Body></soapenv:Envelope>"
    ).encode()


OK_ANSWER = (
    f'<soap:Envelope xmlns:soap="{SOAP11_ENV_NS}"><soap:Body>'
    f'<ProcessCervixScreeningInformationResponse xmlns="{RESPONDER_NS}">'
    f"<resultCode>OK</resultCode></ProcessCervixScreeningInformationResponse>"
    f"</soap:Body></soap:Envelope>"
).encode()
PRODUCER_FAULT = (
    f'<s:Envelope xmlns:s="{SOAP11_ENV_NS}"><s:Body><s:Fault><faultcode>s:Server</faultcode>'
    f"<faultstring>database down</faultstring></s:Fault></s:Body></s:Envelope>"
).encode()


# -- the fake producer -----------------------------------------------------------------------


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class FakeProducer:
    """A loopback producer that records what it receives and answers as ``respond`` says."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.respond: Callable[[Request], Response] = lambda _r: Response(
            OK_ANSWER, 200, content_type="text/xml; charset=UTF-8"
        )
        self._lock = threading.Lock()

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.received.append(Received(request.path, dict(request.headers), request.get_data()))
        return self.respond(request)(environ, start_response)

    def url(self, base: str, path: str = "/producer") -> str:
        return base + path


@contextmanager
def serve(app: Any, port: int = 0) -> Iterator[str]:
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def producer() -> Iterator[tuple[FakeProducer, str]]:
    fake = FakeProducer()
    with serve(fake) as base:
        yield fake, base


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as exit_stack:
        yield exit_stack


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


def base_config(**overrides: Any) -> SimConfig:
    config = SimConfig(
        instance_id=INSTANCE,
        authorisations=(Authorisation(CONSUMER, RESPONDER_NS, "SE"),),
        retry_pause_s=0.05,
        read_timeout_s=5.0,
    )
    return dataclasses.replace(config, **overrides)


def start(stack: ExitStack, config: SimConfig) -> RunningSim:
    return stack.enter_context(serve_sim_in_thread(config))


def call(
    http: requests.Session,
    sim: RunningSim,
    body: bytes,
    *,
    consumer: str | None = CONSUMER,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    sent = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": f'"{SOAP_ACTION}"'}
    if consumer is not None:
        sent[DEV_HEADER] = consumer
    sent.update(headers or {})
    return http.post(sim.url, data=body, headers=sent, timeout=10)


def assert_vp(answer: requests.Response, code: str, instance: str = INSTANCE) -> str:
    """Assert the platform's fault format exactly; return the English detail."""
    assert answer.status_code == 500
    envelope = etree.fromstring(answer.content)
    fault = envelope.find(f"{{{SOAP11_ENV_NS}}}Body/{{{SOAP11_ENV_NS}}}Fault")
    assert fault is not None
    faultcode = fault.findtext("faultcode")
    prefix = faultcode.partition(":")[0]
    assert fault.nsmap.get(prefix, envelope.nsmap.get(prefix)) == SOAP11_ENV_NS
    assert faultcode == VpCode[code].faultcode
    assert fault.findtext("faultstring") == f"{code} [{instance}] {VpCode[code].swedish}"
    detail = fault.findtext("detail/detailString")
    assert detail
    assert answer.headers[HDR_CORRELATION_ID]
    return str(detail)


def result_code(answer: requests.Response) -> str:
    envelope = etree.fromstring(answer.content)
    return str(envelope.findtext(f".//{{{RESPONDER_NS}}}resultCode"))


# -- the fault catalogue ---------------------------------------------------------------------


def test_fault_catalogue_has_platform_faultcodes() -> None:
    client = {"VP002", "VP003", "VP004", "VP011", "VP013", "VP015"}
    server = {"VP006", "VP007", "VP009", "VP014"}
    assert {c.name for c in VpCode} == client | server
    assert all(VpCode[c].faultcode == "soap:Client" for c in client)
    assert all(VpCode[c].faultcode == "soap:Server" for c in server)
    assert VpCode.VP004.swedish.startswith("Det finns inget vägval")


def test_no_route_is_vp004_with_exact_faultstring(stack: ExitStack, http: requests.Session) -> None:
    sim = start(stack, base_config())
    answer = call(http, sim, soap_request("99"))
    detail = assert_vp(answer, "VP004")
    assert "'99'" in detail and RESPONDER_NS in detail
    faultstring = etree.fromstring(answer.content).findtext(".//faultstring")
    assert faultstring.startswith("VP004 [NTjP TEST] Det finns inget vägval")
    assert answer.headers["Content-Type"].startswith("text/xml")


def test_missing_consumer_id_is_vp002(stack: ExitStack, http: requests.Session) -> None:
    sim = start(stack, base_config(routes=(Route("01", RESPONDER_NS, "mock:"),)))
    assert_vp(call(http, sim, soap_request(), consumer=None), "VP002")


def _certificate(serial_number: str | None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, "sim test consumer")]
    if serial_number:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    name = x509.Name(attributes)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_consumer_from_forwarded_certificate(
    stack: ExitStack, http: requests.Session, producer: tuple[FakeProducer, str]
) -> None:
    fake, base = producer
    sim = start(
        stack,
        base_config(routes=(Route("01", RESPONDER_NS, fake.url(base)),), dev_consumer_header=""),
    )
    escaped = quote(_certificate(CONSUMER), safe="")
    answer = call(http, sim, soap_request(), consumer=None, headers={"x-ssl-client-cert": escaped})
    assert answer.status_code == 200
    assert fake.received[-1].headers["X-Rivta-Original-Serviceconsumer-Hsaid"] == CONSUMER

    # A certificate without serialNumber, garbage, or only the (disabled) dev header: VP002.
    no_serial = quote(_certificate(None), safe="")
    for headers in ({"x-ssl-client-cert": no_serial}, {"x-ssl-client-cert": "garbage"}):
        assert_vp(call(http, sim, soap_request(), consumer=None, headers=headers), "VP002")
    assert_vp(call(http, sim, soap_request(), consumer=CONSUMER), "VP002")


def test_ip_allow_list_is_vp011(stack: ExitStack, http: requests.Session) -> None:
    routes = (Route("01", RESPONDER_NS, "mock:"),)
    closed = start(stack, base_config(routes=routes, ip_allow_list=("10.0.0.0/8",)))
    detail = assert_vp(call(http, closed, soap_request()), "VP011")
    assert "127.0.0.1" in detail
    open_ = start(stack, base_config(routes=routes, ip_allow_list=("10.0.0.0/8", "127.0.0.1")))
    assert call(http, open_, soap_request()).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        soap_request(None),
        soap_request(""),
        soap_request(None, extra_header="<Other>01</Other>"),
    ],
    ids=["absent", "empty", "other-header-only"],
)
def test_missing_logical_address_is_vp003(
    stack: ExitStack, http: requests.Session, body: bytes
) -> None:
    sim = start(stack, base_config(routes=(Route("SE", "*", "mock:"),)))
    assert_vp(call(http, sim, body), "VP003")


def test_first_logical_address_header_wins(stack: ExitStack, http: requests.Session) -> None:
    # Any namespace: the platform looks at the local name only, and takes the first one.
    first = '<x:LogicalAddress xmlns:x="urn:other">01</x:LogicalAddress>'
    sim = start(stack, base_config(routes=(Route("01", RESPONDER_NS, "mock:"),)))
    assert call(http, sim, soap_request("99", extra_header=first)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"<not xml",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>',
        b"<Envelope><Body><x/></Body></Envelope>",
        f'<s:Envelope xmlns:s="{SOAP11_ENV_NS}"><s:Body/></s:Envelope>'.encode(),
        b"",
    ],
    ids=["malformed", "doctype", "not-soap", "empty-body-element", "empty"],
)
def test_unreadable_xml_is_vp015(stack: ExitStack, http: requests.Session, body: bytes) -> None:
    sim = start(stack, base_config(routes=(Route("SE", "*", "mock:"),)))
    assert_vp(call(http, sim, body), "VP015")


def test_oversize_body_is_vp015(stack: ExitStack, http: requests.Session) -> None:
    sim = start(stack, base_config(routes=(Route("01", "*", "mock:"),), max_body_bytes=2000))
    body = soap_request(extra_header="<Pad>" + "x" * 3000 + "</Pad>")
    assert "2000" in assert_vp(call(http, sim, body), "VP015")


def test_two_routes_is_vp006(stack: ExitStack, http: requests.Session) -> None:
    routes = (Route("01", RESPONDER_NS, "mock:"), Route("01", RESPONDER_NS, "mock:?seed=2"))
    sim = start(stack, base_config(routes=routes))
    assert_vp(call(http, sim, soap_request("01")), "VP006")


def test_not_authorised_is_vp007(stack: ExitStack, http: requests.Session) -> None:
    sim = start(
        stack,
        base_config(
            routes=(Route("01", RESPONDER_NS, "mock:"),),
            authorisations=(Authorisation(CONSUMER, RESPONDER_NS, "03"),),
        ),
    )
    detail = assert_vp(call(http, sim, soap_request("01")), "VP007")
    assert CONSUMER in detail
    assert_vp(call(http, sim, soap_request("01"), consumer="SE0000000000-NOBODY"), "VP007")


def test_original_consumer_header_rights_vp013(
    stack: ExitStack, http: requests.Session, producer: tuple[FakeProducer, str]
) -> None:
    fake, base = producer
    routes = (Route("01", RESPONDER_NS, fake.url(base)),)
    strict = start(stack, base_config(routes=routes))
    answer = call(http, strict, soap_request(), headers={HDR_ORIGINAL_CONSUMER: "SE1-ORIGIN"})
    assert "not approved" in assert_vp(answer, "VP013")
    assert fake.received == []

    # Absent: the platform sets it to the consumer's own HSA-id.
    assert call(http, strict, soap_request()).status_code == 200
    assert fake.received[-1].headers["X-Rivta-Original-Serviceconsumer-Hsaid"] == CONSUMER

    # An approved consumer's value is forwarded unchanged.
    trusting = start(stack, base_config(routes=routes, original_consumer_allowed=(CONSUMER,)))
    answer = call(http, trusting, soap_request(), headers={HDR_ORIGINAL_CONSUMER: "SE1-ORIGIN"})
    assert answer.status_code == 200
    assert fake.received[-1].headers["X-Rivta-Original-Serviceconsumer-Hsaid"] == "SE1-ORIGIN"


def test_routing_loop_is_vp014(
    stack: ExitStack, http: requests.Session, producer: tuple[FakeProducer, str]
) -> None:
    fake, base = producer
    sim = start(stack, base_config(routes=(Route("01", RESPONDER_NS, fake.url(base)),)))
    looped = {"x-rivta-routing-history": f"NTjP OTHER,{INSTANCE}"}
    assert_vp(call(http, sim, soap_request(), headers=looped), "VP014")
    assert fake.received == []

    # Without this instance in it, the history is extended towards the producer.
    answer = call(http, sim, soap_request(), headers={"x-rivta-routing-history": "NTjP OTHER"})
    assert answer.status_code == 200
    assert fake.received[-1].headers["X-Rivta-Routing-History"] == f"NTjP OTHER,{INSTANCE}"


def test_loop_through_two_simulators_is_vp014(stack: ExitStack, http: requests.Session) -> None:
    # A routes to B, B routes back to A: the second visit to A must stop with VP014.
    # Each platform identifies itself to the next through the dev header, as a certificate would.
    port_a = free_port()
    auth = (Authorisation("*", "*", "SE"),)
    common: dict[str, Any] = {
        "authorisations": auth,
        "platform_hsaid_header": DEV_HEADER,
        "original_consumer_allowed": ("*",),  # a platform forwards it
    }
    b = start(
        stack,
        base_config(
            instance_id="NTjP B",
            routes=(Route("01", "*", f"http://127.0.0.1:{port_a}/"),),
            **common,
        ),
    )
    a_config = base_config(routes=(Route("01", "*", b.url),), **common)
    stack.enter_context(serve_sim_in_thread(a_config, port=port_a))
    answer = http.post(
        f"http://127.0.0.1:{port_a}/",
        data=soap_request("01"),
        headers={DEV_HEADER: CONSUMER, "Content-Type": "text/xml"},
        timeout=10,
    )
    assert_vp(answer, "VP014")  # produced by A on the second pass, relayed by B and A unchanged


# -- routing and authorisation tables --------------------------------------------------------


def test_routing_fallback_exact_then_se_then_star(
    stack: ExitStack, http: requests.Session, producer: tuple[FakeProducer, str]
) -> None:
    fake, base = producer
    routes = (
        Route("01", RESPONDER_NS, fake.url(base, "/exact")),
        Route("SE", RESPONDER_NS, fake.url(base, "/se")),
        Route("*", RESPONDER_NS, fake.url(base, "/star")),
        Route("03", "*", fake.url(base, "/wildcard-contract")),
    )
    auth = (Authorisation(CONSUMER, "*", "SE"),)
    sim = start(stack, base_config(routes=routes, authorisations=auth))
    for address, path in (("01", "/exact"), ("05", "/se"), ("03", "/wildcard-contract")):
        assert call(http, sim, soap_request(address)).status_code == 200
        assert fake.received[-1].path == path

    only_star = start(stack, base_config(routes=routes[::2], authorisations=auth))
    assert call(http, only_star, soap_request("05")).status_code == 200
    assert fake.received[-1].path == "/star"
    # An exact contract entry wins over a "*" contract entry for the same address.
    both = (Route("07", "*", fake.url(base, "/any")), Route("07", RESPONDER_NS, fake.url(base)))
    sim2 = start(stack, base_config(routes=both, authorisations=auth))
    assert call(http, sim2, soap_request("07")).status_code == 200
    assert fake.received[-1].path == "/producer"


def test_routing_is_case_insensitive(stack: ExitStack, http: requests.Session) -> None:
    routes = (Route("region-x", RESPONDER_NS.upper(), "mock:"),)
    auth = (Authorisation(CONSUMER.lower(), RESPONDER_NS.upper(), "REGION-X"),)
    sim = start(stack, base_config(routes=routes, authorisations=auth))
    assert call(http, sim, soap_request("Region-X")).status_code == 200


@pytest.mark.parametrize("address", [" 01", "01 ", "\n01"])
def test_logical_address_is_not_trimmed(
    stack: ExitStack, http: requests.Session, address: str
) -> None:
    sim = start(stack, base_config(routes=(Route("01", RESPONDER_NS, "mock:"),)))
    assert call(http, sim, soap_request("01")).status_code == 200
    assert repr(address) in assert_vp(call(http, sim, soap_request(address)), "VP004")


def test_contract_is_namespace_of_first_body_element(
    stack: ExitStack, http: requests.Session
) -> None:
    sim = start(stack, base_config(routes=(Route("01", RESPONDER_NS, "mock:"),)))
    assert OTHER_NS in assert_vp(call(http, sim, soap_request(namespace=OTHER_NS)), "VP004")


def test_only_routes_valid_now_count(stack: ExitStack, http: requests.Session) -> None:
    now = datetime.now(UTC)
    day = timedelta(days=1)
    routes = (
        Route("01", RESPONDER_NS, "mock:", valid_from=now - 3 * day, valid_to=now - day),
        Route("03", RESPONDER_NS, "mock:", valid_from=now + day),
        Route("05", RESPONDER_NS, "mock:", valid_from=now - day, valid_to=now + day),
        # An expired specific route must not hide a valid fallback.
        Route("07", RESPONDER_NS, "mock:?seed=x", valid_to=now - day),
        Route("SE", RESPONDER_NS, "mock:"),
    )
    sim = start(stack, base_config(routes=routes[:4]))
    assert_vp(call(http, sim, soap_request("01")), "VP004")
    assert_vp(call(http, sim, soap_request("03")), "VP004")
    assert call(http, sim, soap_request("05")).status_code == 200
    with_fallback = start(stack, base_config(routes=routes))
    assert call(http, with_fallback, soap_request("07")).status_code == 200
    # Two routes whose windows do not overlap are not a VP006.
    handover = (
        Route("09", RESPONDER_NS, "mock:?seed=old", valid_to=now - day),
        Route("09", RESPONDER_NS, "mock:?seed=new", valid_from=now - day),
    )
    sim3 = start(stack, base_config(routes=handover))
    assert call(http, sim3, soap_request("09")).status_code == 200


@pytest.mark.parametrize(
    ("authorised_address", "called", "allowed"),
    [
        ("01", "01", True),
        ("*", "01", True),
        ("SE", "01", True),
        ("03", "01", False),
    ],
)
def test_authorisation_fallbacks(
    stack: ExitStack,
    http: requests.Session,
    authorised_address: str,
    called: str,
    allowed: bool,
) -> None:
    auth = (Authorisation(CONSUMER, RESPONDER_NS, authorised_address),)
    sim = start(stack, base_config(routes=(Route("SE", "*", "mock:"),), authorisations=auth))
    answer = call(http, sim, soap_request(called))
    if allowed:
        assert answer.status_code == 200
    else:
        assert_vp(answer, "VP007")


def test_authorisation_validity_and_contract(stack: ExitStack, http: requests.Session) -> None:
    now = datetime.now(UTC)
    auth = (
        Authorisation(CONSUMER, RESPONDER_NS, "SE", valid_to=now - timedelta(days=1)),
        Authorisation(CONSUMER, OTHER_NS, "SE"),
    )
    sim = start(stack, base_config(routes=(Route("SE", "*", "mock:"),), authorisations=auth))
    assert_vp(call(http, sim, soap_request("01")), "VP007")


# -- headers and the producer hop ------------------------------------------------------------


def test_headers_towards_producer_and_back(
    stack: ExitStack, http: requests.Session, producer: tuple[FakeProducer, str]
) -> None:
    fake, base = producer
    sim = start(stack, base_config(routes=(Route("01", RESPONDER_NS, fake.url(base)),)))
    request_body = soap_request()
    answer = call(http, sim, request_body, headers={HDR_CORRELATION_ID: "corr-123"})
    assert answer.status_code == 200
    assert answer.content == OK_ANSWER
    assert answer.headers[HDR_CORRELATION_ID] == "corr-123"
    assert int(answer.headers[HDR_PRT]) >= 0
    seen = fake.received[-1]
    assert seen.body == request_body
    assert seen.headers["Soapaction"] == f'"{SOAP_ACTION}"'
    assert seen.headers["X-Skltp-Correlation-Id"] == "corr-123"
    assert seen.headers["X-Vp-Sender-Id"] == CONSUMER

    generated = call(http, sim, request_body)
    uuid.UUID(generated.headers[HDR_CORRELATION_ID])
    assert (
        fake.received[-1].headers["X-Skltp-Correlation-Id"] == generated.headers[HDR_CORRELATION_ID]
    )
    # Faults made by the platform carry a correlation id too.
    fault = call(http, sim, soap_request("99"), headers={HDR_CORRELATION_ID: "corr-9"})
    assert fault.headers[HDR_CORRELATION_ID] == "corr-9"


def test_producer_response_time_is_measured(
    stack: ExitStack, http: requests.Session, producer: tuple[FakeProducer, str]
) -> None:
    fake, base = producer

    def slow(_request: Request) -> Response:
        time.sleep(0.2)
        return Response(OK_ANSWER, 200, content_type="text/xml")

    fake.respond = slow
    sim = start(stack, base_config(routes=(Route("01", RESPONDER_NS, fake.url(base)),)))
    assert 200 <= int(call(http, sim, soap_request()).headers[HDR_PRT]) < 2000


def test_producer_answers_pass_back_unchanged(
    stack: ExitStack, http: requests.Session, producer: tuple[FakeProducer, str]
) -> None:
    fake, base = producer
    sim = start(stack, base_config(routes=(Route("01", RESPONDER_NS, fake.url(base)),)))
    fake.respond = lambda _r: Response(PRODUCER_FAULT, 500, content_type="text/xml")
    answer = call(http, sim, soap_request())
    assert (answer.status_code, answer.content) == (500, PRODUCER_FAULT)

    odd_but_200 = b"<anything-the-producer-says/>"
    fake.respond = lambda _r: Response(odd_but_200, 200, content_type="text/xml")
    answer = call(http, sim, soap_request())
    assert (answer.status_code, answer.content) == (200, odd_but_200)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b"<html>Internal Server Error</html>"),
        (404, b"Not Found"),
        (503, PRODUCER_FAULT),
        (200, b""),
        (500, b""),
    ],
    ids=["500-html", "404", "503-fault", "200-empty", "500-empty"],
)
def test_non_soap_or_empty_producer_answer_is_vp009(
    stack: ExitStack,
    http: requests.Session,
    producer: tuple[FakeProducer, str],
    status: int,
    body: bytes,
) -> None:
    fake, base = producer
    fake.respond = lambda _r: Response(body, status, content_type="text/html")
    sim = start(stack, base_config(routes=(Route("01", RESPONDER_NS, fake.url(base)),)))
    assert_vp(call(http, sim, soap_request()), "VP009")
    assert len(fake.received) == 1  # not a connection error: no retry


def test_producer_timeout_is_vp009_without_retry(
    stack: ExitStack, http: requests.Session, producer: tuple[FakeProducer, str]
) -> None:
    fake, base = producer
    release = threading.Event()

    def hang(_request: Request) -> Response:
        release.wait(5)
        return Response(OK_ANSWER, 200, content_type="text/xml")

    fake.respond = hang
    route = Route("01", RESPONDER_NS, fake.url(base), timeout_s=0.3)
    sim = start(stack, base_config(routes=(route,)))
    started = time.monotonic()
    detail = assert_vp(call(http, sim, soap_request()), "VP009")
    elapsed = time.monotonic() - started
    release.set()
    assert "Timeout" in detail
    assert 0.3 <= elapsed < 3
    assert len(fake.received) == 1


@pytest.mark.parametrize("where", ["body", "head"])
def test_a_producer_that_trickles_its_answer_gets_vp009_at_the_timeout(
    stack: ExitStack, http: requests.Session, where: str
) -> None:
    # A byte every 0.2 s: every read comes well within the timeout, the whole answer never does.
    # The platform's timeout is the call's: VP009 at the timeout, as for a silent producer.
    if where == "body":
        slow = TricklingServer(http_head(length=len(OK_ANSWER)), OK_ANSWER, interval=0.2)
    else:
        slow = TricklingServer(http_head(length=len(OK_ANSWER)) + OK_ANSWER, head_step=1)
    stack.callback(slow.stop)
    route = Route("01", RESPONDER_NS, slow.url + "/producer", timeout_s=1.0)
    sim = start(stack, base_config(routes=(route,)))
    started = time.monotonic()
    detail = assert_vp(call(http, sim, soap_request()), "VP009")
    elapsed = time.monotonic() - started
    assert "Timeout" in detail
    assert 1.0 <= elapsed < 2.5, elapsed
    assert slow.connections == 1  # a timeout is not retried


def test_connection_refused_retries_once_after_pause_then_vp009(
    stack: ExitStack, http: requests.Session
) -> None:
    port = free_port()
    route = Route("01", RESPONDER_NS, f"http://127.0.0.1:{port}/producer")
    sim = start(stack, base_config(routes=(route,), retry_pause_s=0.5))
    started = time.monotonic()
    detail = assert_vp(call(http, sim, soap_request()), "VP009")
    assert "after one retry" in detail and str(port) in detail
    assert 0.5 <= time.monotonic() - started < 3


def test_retry_reaches_producer_that_comes_up_during_pause(
    stack: ExitStack, http: requests.Session
) -> None:
    # The honest proof of the retry: the first attempt is refused, the producer starts during the
    # pause, and the call succeeds with the producer having seen exactly one request.
    port = free_port()
    route = Route("01", RESPONDER_NS, f"http://127.0.0.1:{port}/producer")
    sim = start(stack, base_config(routes=(route,), retry_pause_s=1.0))
    fake = FakeProducer()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(call, http, sim, soap_request())
        time.sleep(0.3)
        with serve(fake, port):
            answer = pending.result(timeout=10)
    assert answer.status_code == 200
    assert answer.content == OK_ANSWER
    assert len(fake.received) == 1


# -- the mock producer -----------------------------------------------------------------------


def test_magic_personnummer_are_valid_looking() -> None:
    for pnr in (MOCK_PNR_DELAY, MOCK_PNR_FAULT, MOCK_PNR_ERROR, MOCK_PNR_INFO):
        assert len(pnr) == 12 and pnr.isdigit()
        datetime.strptime(pnr[:8], "%Y%m%d")
        assert luhn_digit(pnr[2:11]) == pnr[11]
        assert int(pnr[10]) % 2 == 0  # a woman
    assert len({MOCK_PNR_DELAY, MOCK_PNR_FAULT, MOCK_PNR_ERROR, MOCK_PNR_INFO}) == 4
    assert all(luhn_digit(synthetic_pnr(n)[2:11]) == synthetic_pnr(n)[11] for n in range(50))


def test_load_mocks_answers_ok_for_any_consumer(stack: ExitStack, http: requests.Session) -> None:
    sim = start(stack, base_config(authorisations=()))
    answer = call(http, sim, soap_request(LOAD_MOCKS), consumer="SE0000000000-ANYONE")
    assert answer.status_code == 200
    assert result_code(answer) == "OK"
    assert "resultText" not in answer.text
    assert int(answer.headers[HDR_PRT]) >= 0
    # Without load_mocks the address is unknown like any other.
    closed = start(stack, base_config(load_mocks=False))
    assert_vp(call(http, closed, soap_request(LOAD_MOCKS)), "VP004")


@pytest.mark.parametrize(("pnr", "code"), [(MOCK_PNR_ERROR, "ERROR"), (MOCK_PNR_INFO, "INFO")])
def test_mock_magic_result_codes(
    stack: ExitStack, http: requests.Session, pnr: str, code: str
) -> None:
    sim = start(stack, base_config())
    answer = call(http, sim, soap_request(LOAD_MOCKS, pnr=pnr))
    assert answer.status_code == 200
    assert result_code(answer) == code
    assert etree.fromstring(answer.content).findtext(f".//{{{RESPONDER_NS}}}resultText")


def test_mock_magic_fault_is_a_producer_fault(stack: ExitStack, http: requests.Session) -> None:
    sim = start(stack, base_config())
    answer = call(http, sim, soap_request(LOAD_MOCKS, pnr=MOCK_PNR_FAULT))
    assert answer.status_code == 500
    fault = etree.fromstring(answer.content).find(f".//{{{SOAP11_ENV_NS}}}Fault")
    assert fault.findtext("faultcode") == "soap:Server"
    assert not fault.findtext("faultstring").startswith("VP")  # the producer's, not the platform's


def test_mock_magic_delay(stack: ExitStack, http: requests.Session) -> None:
    body = soap_request(LOAD_MOCKS, pnr=MOCK_PNR_DELAY)
    slow = start(stack, base_config(mock_delay_s=2.0, read_timeout_s=0.3))
    started = time.monotonic()
    assert "Timeout" in assert_vp(call(http, slow, body), "VP009")
    assert 0.3 <= time.monotonic() - started < 1.5
    patient = start(stack, base_config(mock_delay_s=0.3, read_timeout_s=5.0))
    answer = call(http, patient, body)
    assert answer.status_code == 200 and result_code(answer) == "OK"
    assert int(answer.headers[HDR_PRT]) >= 300


def test_mock_route_for_any_address_with_injection(
    stack: ExitStack, http: requests.Session
) -> None:
    routes = (
        Route("01", RESPONDER_NS, "mock:?fault_rate=1"),
        Route("03", RESPONDER_NS, "mock:?error_rate=1"),
        Route("05", RESPONDER_NS, "mock:"),
    )
    sim = start(stack, base_config(routes=routes))
    faulted = call(http, sim, soap_request("01"))
    assert faulted.status_code == 500 and b"injected" in faulted.content
    assert result_code(call(http, sim, soap_request("03"))) == "ERROR"
    assert result_code(call(http, sim, soap_request("05"))) == "OK"


def _outcomes(http: requests.Session, sim: RunningSim, count: int) -> list[str]:
    outcomes = []
    for n in range(count):
        answer = call(http, sim, soap_request("01", pnr=synthetic_pnr(n)))
        outcomes.append("FAULT" if answer.status_code == 500 else result_code(answer))
    return outcomes


def test_mock_injection_is_deterministic_by_content(
    stack: ExitStack, http: requests.Session
) -> None:
    url = "mock:?fault_rate=0.3&error_rate=0.3&seed=7"
    config = base_config(routes=(Route("01", RESPONDER_NS, url),))
    first = _outcomes(http, start(stack, config), 45)
    second = _outcomes(http, start(stack, config), 45)
    assert first == second  # a fresh simulator replays the same run
    assert {"FAULT", "ERROR", "OK"} <= set(first)
    other_seed = dataclasses.replace(
        config, routes=(Route("01", RESPONDER_NS, url.replace("seed=7", "seed=8")),)
    )
    assert _outcomes(http, start(stack, other_seed), 45) != first


def test_mock_injection_resend_draws_again_unless_sticky(
    stack: ExitStack, http: requests.Session
) -> None:
    flaky = start(stack, base_config(routes=(Route("01", RESPONDER_NS, "mock:?fault_rate=0.5"),)))
    body = soap_request("01")
    assert len({call(http, flaky, body).status_code for _ in range(20)}) == 2
    sticky_url = "mock:?fault_rate=0.5&sticky=1"
    sticky = start(stack, base_config(routes=(Route("01", RESPONDER_NS, sticky_url),)))
    assert len({call(http, sticky, body).status_code for _ in range(5)}) == 1


def test_mock_rejects_unknown_options() -> None:
    # At start-up, not on the first call: a typo must not run a benchmark without its faults.
    with pytest.raises(ValueError, match="fault_rat"):
        create_sim_app(base_config(routes=(Route("01", "*", "mock:?fault_rat=0.1"),)))
    with pytest.raises(ValueError, match="at most 1"):
        create_sim_app(
            base_config(routes=(Route("01", "*", "mock:?fault_rate=0.6&error_rate=0.6"),))
        )


def test_mock_for_another_contract_is_a_producer_fault(
    stack: ExitStack, http: requests.Session
) -> None:
    auth = (Authorisation(CONSUMER, "*", "SE"),)
    sim = start(stack, base_config(authorisations=auth))
    answer = call(http, sim, soap_request(LOAD_MOCKS, namespace=OTHER_NS))
    assert answer.status_code == 500
    assert OTHER_NS.encode() in answer.content


def test_mock_is_mounted_over_http(stack: ExitStack, http: requests.Session) -> None:
    port = free_port()
    mock_url = f"http://127.0.0.1:{port}{MOCK_PATH}"
    config = base_config(routes=(Route("01", RESPONDER_NS, mock_url),))
    stack.enter_context(serve_sim_in_thread(config, port=port))
    answer = http.post(
        mock_url + "?error_rate=1", data=soap_request("01"), headers={DEV_HEADER: CONSUMER}
    )
    assert result_code(answer) == "ERROR"
    routed = http.post(
        f"http://127.0.0.1:{port}/any/path",
        data=soap_request("01", pnr=MOCK_PNR_INFO),
        headers={DEV_HEADER: CONSUMER},
        timeout=10,
    )
    assert result_code(routed) == "INFO"


def test_concurrent_calls(stack: ExitStack, http: requests.Session) -> None:
    sim = start(stack, default_sim_config(instance_id=INSTANCE))

    def one(n: int) -> int:
        with requests.Session() as session:
            session.trust_env = False
            code = LAN_CODES_FOR_TEST[n % len(LAN_CODES_FOR_TEST)]
            return call(session, sim, soap_request(code, pnr=synthetic_pnr(n))).status_code

    with ThreadPoolExecutor(12) as pool:
        assert set(pool.map(one, range(60))) == {200}


LAN_CODES_FOR_TEST = ("01", "03", "12", "14", "25")


# -- discovery, configuration, misc ----------------------------------------------------------


def test_discovery_lists_authorised_addresses(stack: ExitStack, http: requests.Session) -> None:
    now = datetime.now(UTC)
    auth = (
        Authorisation(CONSUMER, RESPONDER_NS, "01"),
        Authorisation(CONSUMER, RESPONDER_NS, "14"),
        Authorisation(CONSUMER, RESPONDER_NS, "05", valid_to=now - timedelta(days=1)),
        Authorisation(CONSUMER, OTHER_NS, "03"),
        Authorisation("SE0000000000-OTHER", RESPONDER_NS, "09"),
    )
    sim = start(stack, base_config(authorisations=auth, load_mocks=False))
    body = (
        f'<s:Envelope xmlns:s="{SOAP11_ENV_NS}" xmlns:d="{DISCOVERY_NS}"><s:Header>'
        f'<LogicalAddress xmlns="{ITR_NS}">5565594230</LogicalAddress></s:Header><s:Body>'
        f"<d:GetLogicalAddresseesByServiceContract>"
        f"<d:serviceConsumerHsaId>{CONSUMER}</d:serviceConsumerHsaId>"
        f"<d:serviceContractNameSpace>{RESPONDER_NS}</d:serviceContractNameSpace>"
        f"</d:GetLogicalAddresseesByServiceContract></s:Body></s:Envelope>"
    ).encode()
    answer = call(http, sim, body)
    assert answer.status_code == 200
    found = etree.fromstring(answer.content).findall(f".//{{{DISCOVERY_NS}}}logicalAddress")
    assert [e.text for e in found] == ["01", "14"]


def test_get_is_a_friendly_page(stack: ExitStack, http: requests.Session) -> None:
    sim = start(stack, base_config())
    answer = http.get(sim.base_url + "/", timeout=5)
    assert answer.status_code == 200 and INSTANCE in answer.text


def test_example_config_loads_and_routes(stack: ExitStack, http: requests.Session) -> None:
    path = pathlib.Path(__file__).parents[1] / "hub" / "sim" / "routes.example.toml"
    config = load_sim_config(path)
    assert config.instance_id == "NTjP SIM"
    assert [r.logical_address for r in config.routes] == ["01", "12", "14", "SE"]
    assert config.routes[0].timeout_s == 29.0
    assert config.routes[0].valid_to == datetime(2031, 1, 1).astimezone()
    sim = start(stack, config)
    answer = call(http, sim, soap_request("12"), consumer="SE2321000016-HUB1")
    assert (answer.status_code, result_code(answer)) == (200, "OK")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sim": {"instance_idd": "x"}}, "instance_idd"),
        ({"routes": [{"logical_address": "01", "url": "ftp://x"}]}, "routes\\[0\\].url"),
        ({"routes": [{"logical_address": "01"}]}, "routes\\[0\\].url"),
        ({"sim": {"read_timeout_s": "29"}}, "read_timeout_s"),
        ({"sim": {"ip_allow_list": ["not-an-ip"]}}, "ip_allow_list"),
        ({"sim": {"instance_id": "a,b"}}, "instance_id"),
        ({"sim": {"read_timeout_s": 0}}, "timeouts"),
        (
            {"authorisations": [{"consumer_hsaid": "x", "logical_address": "01", "x": 1}]},
            "authorisations\\[0\\]",
        ),
        (
            {
                "routes": [
                    {
                        "logical_address": "01",
                        "url": "mock:",
                        "valid_from": datetime(2030, 1, 1),
                        "valid_to": datetime(2029, 1, 1),
                    }
                ]
            },
            "valid_to",
        ),
    ],
)
def test_bad_config_fails_loudly(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SimConfigError, match=message):
        sim_config_from_mapping(data)


def test_default_config_routes_hub_codes_to_hub_and_the_rest_to_mock(
    stack: ExitStack, http: requests.Session, producer: tuple[FakeProducer, str]
) -> None:
    fake, base = producer
    config = default_sim_config(
        hub_url=fake.url(base, "/hub"),
        hub_lan_codes=("01", "14"),
        consumer_hsaids=(CONSUMER,),
        instance_id=INSTANCE,
        retry_pause_s=0.01,
    )
    assert config.retry_pause_s == 0.01
    assert len(config.routes) == 21
    sim = start(stack, config)
    assert call(http, sim, soap_request("14")).status_code == 200
    assert fake.received[-1].path == "/hub"
    assert result_code(call(http, sim, soap_request("25"))) == "OK"
    assert len(fake.received) == 1
    assert_vp(call(http, sim, soap_request("25"), consumer="SE0-STRANGER"), "VP007")
    with pytest.raises(SimConfigError):
        default_sim_config(hub_lan_codes=("01",))
