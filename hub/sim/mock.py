"""The simulator's built-in mock producer of ProcessCervixScreeningInformation.

Reached in two ways: the logical address ``LOAD-MOCKS`` (as in NTjP's SIT environment, routed and
authorised for every consumer by default), and any route whose URL is ``mock:`` — so the hub's
outbound side can be benchmarked against 20 instant destinations without 20 servers. It is also
mounted over HTTP at :data:`MOCK_PATH` on the simulator, for a producer URL that must be real HTTP.

It answers ``resultCode=OK`` unless the request asks for something else:

Magic personnummer (``subjectOfCare/personId/extension``). Synthetic 12-digit numbers with a real
date and a valid check digit (Luhn over the last 10 digits) and an even birth-number digit (a
woman), so they pass the contract's rules; the birth date 1912-12-12 is the one Swedish healthcare
test data traditionally uses, which makes them recognisable as test data at a glance:

=====================  ================  ==========================================================
Constant               Value             Behaviour
=====================  ================  ==========================================================
``MOCK_PNR_DELAY``     ``191212129801``  sleeps ``mock_delay_s`` (config, default 35 s, i.e. longer
                                         than the 29 s producer timeout → VP009), then answers OK
``MOCK_PNR_FAULT``     ``191212129827``  SOAP Fault ``soap:Server``, HTTP 500 (a technical error)
``MOCK_PNR_ERROR``     ``191212129843``  ``resultCode=ERROR`` with a ``resultText``
``MOCK_PNR_INFO``      ``191212129868``  ``resultCode=INFO`` with a ``resultText``
=====================  ================  ==========================================================

Fault injection for ``mock:`` routes: ``mock:?fault_rate=0.01&error_rate=0.02&seed=1&latency_ms=5``.
Each call draws a number in [0, 1) from SHA-256 over (seed, request body, how many times this exact
body has been seen): below ``fault_rate`` → SOAP Fault; below ``fault_rate + error_rate`` →
``resultCode=ERROR``. A run is therefore reproducible message by message, and a resent message
draws again (as a real flaky producer would let it through eventually). ``sticky=1`` drops the
attempt count, so the same message always gets the same outcome.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from hub.contract.names import OPERATION_TAG, RESPONDER_NS, SOAP11_ENV_NS
from hub.sim.faults import soap_fault

MOCK_PNR_DELAY: Final = "191212129801"
MOCK_PNR_FAULT: Final = "191212129827"
MOCK_PNR_ERROR: Final = "191212129843"
MOCK_PNR_INFO: Final = "191212129868"

#: Path under which the simulator also serves the mock over HTTP.
MOCK_PATH: Final = "/sim/mock"

_REQUEST_ELEMENT: Final = OPERATION_TAG
# Namespace-agnostic on purpose: a request with the person id in the wrong namespace should still
# reach the magic behaviour; validating namespaces is the real producer's job, not the mock's.
_PNR_XPATH: Final = etree.XPath(
    "//*[local-name()='subjectOfCare']/*[local-name()='personId']/*[local-name()='extension']/text()"
)
# Bounds the memory the attempt counter may use in a long benchmark.
_MAX_TRACKED_BODIES: Final = 200_000


@dataclass(frozen=True, slots=True)
class MockOptions:
    """Fault injection knobs of a ``mock:`` route URL."""

    fault_rate: float = 0.0
    error_rate: float = 0.0
    seed: str = "0"
    latency_ms: float = 0.0
    sticky: bool = False


@dataclass(frozen=True, slots=True)
class MockReply:
    """What the mock answers: HTTP status, body, and how long to wait before answering."""

    status: int
    body: bytes
    delay_s: float = 0.0


def parse_mock_url(url: str) -> MockOptions:
    """Parse ``mock:?fault_rate=…&error_rate=…&seed=…&latency_ms=…&sticky=1``.

    Raises ``ValueError`` on unknown keys or rates outside [0, 1], so a typo in a benchmark route
    does not silently run without the faults it was meant to inject.
    """
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    known = {"fault_rate", "error_rate", "seed", "latency_ms", "sticky"}
    unknown = set(query) - known
    if unknown:
        raise ValueError(f"unknown mock option(s): {', '.join(sorted(unknown))}")

    def last(key: str, default: str) -> str:
        return query.get(key, [default])[-1]

    options = MockOptions(
        fault_rate=float(last("fault_rate", "0")),
        error_rate=float(last("error_rate", "0")),
        seed=last("seed", "0"),
        latency_ms=float(last("latency_ms", "0")),
        sticky=last("sticky", "0").lower() in ("1", "true", "yes"),
    )
    if not (0 <= options.fault_rate <= 1 and 0 <= options.error_rate <= 1):
        raise ValueError("mock fault_rate and error_rate must lie in [0, 1]")
    if options.fault_rate + options.error_rate > 1 or options.latency_ms < 0:
        raise ValueError("mock fault_rate + error_rate must be at most 1, latency_ms >= 0")
    return options


def response_envelope(result_code: str, result_text: str | None = None) -> bytes:
    """Return a ProcessCervixScreeningInformationResponse envelope (responder namespace)."""
    text = f"<r:resultText>{escape(result_text)}</r:resultText>" if result_text else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP11_ENV_NS}"><soap:Header/><soap:Body>'
        f'<r:ProcessCervixScreeningInformationResponse xmlns:r="{RESPONDER_NS}">'
        f"<r:resultCode>{result_code}</r:resultCode>{text}"
        f"</r:ProcessCervixScreeningInformationResponse></soap:Body></soap:Envelope>"
    ).encode()


class MockProducer:
    """The mock's behaviour; thread-safe (the only shared state is the locked attempt counter)."""

    def __init__(self, delay_s: float) -> None:
        self._delay_s = delay_s
        self._lock = threading.Lock()
        self._attempts: OrderedDict[bytes, int] = OrderedDict()

    def _attempt(self, digest: bytes) -> int:
        with self._lock:
            count = self._attempts.pop(digest, 0)
            self._attempts[digest] = count + 1
            if len(self._attempts) > _MAX_TRACKED_BODIES:
                self._attempts.popitem(last=False)
            return count

    def _draw(self, body: bytes, options: MockOptions) -> float:
        attempt = 0 if options.sticky else self._attempt(hashlib.sha256(body).digest())
        digest = hashlib.sha256(
            options.seed.encode() + b"\0" + body + b"\0" + str(attempt).encode()
        ).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def answer(self, body: bytes, envelope: etree._Element, options: MockOptions) -> MockReply:
        """Answer a request whose parsed SOAP envelope is ``envelope`` (``body`` its raw bytes)."""
        latency = options.latency_ms / 1000
        payload = _first_body_child(envelope)
        if payload is None or payload.tag != _REQUEST_ELEMENT:
            contract = "(none)" if payload is None else etree.QName(payload).namespace
            return MockReply(
                500,
                soap_fault(
                    "soap:Server",
                    "Mock producer: no answer for this contract",
                    f"The simulator's mock only answers ProcessCervixScreeningInformation, "
                    f"not {contract}",
                ),
                latency,
            )
        pnrs = {str(t) for t in _PNR_XPATH(payload)}
        if MOCK_PNR_FAULT in pnrs:
            return MockReply(
                500,
                soap_fault(
                    "soap:Server",
                    "Mock producer: technical error forced by a test personnummer",
                    "MOCK_PNR_FAULT",
                ),
                latency,
            )
        if MOCK_PNR_ERROR in pnrs:
            return MockReply(
                200,
                response_envelope("ERROR", "Mock producer: ERROR forced by a test personnummer"),
                latency,
            )
        if MOCK_PNR_INFO in pnrs:
            return MockReply(
                200,
                response_envelope("INFO", "Mock producer: INFO forced by a test personnummer"),
                latency,
            )
        if MOCK_PNR_DELAY in pnrs:
            return MockReply(200, response_envelope("OK"), latency + self._delay_s)
        if options.fault_rate or options.error_rate:
            draw = self._draw(body, options)
            if draw < options.fault_rate:
                return MockReply(
                    500,
                    soap_fault(
                        "soap:Server", "Mock producer: injected technical error", "fault_rate"
                    ),
                    latency,
                )
            if draw < options.fault_rate + options.error_rate:
                return MockReply(
                    200, response_envelope("ERROR", "Mock producer: injected error"), latency
                )
        return MockReply(200, response_envelope("OK"), latency)


def _first_body_child(envelope: etree._Element) -> etree._Element | None:
    body = envelope.find(f"{{{SOAP11_ENV_NS}}}Body")
    if body is None:
        return None
    for child in body:
        if isinstance(child.tag, str):
            return child
    return None


__all__ = [
    "MOCK_PATH",
    "MOCK_PNR_DELAY",
    "MOCK_PNR_ERROR",
    "MOCK_PNR_FAULT",
    "MOCK_PNR_INFO",
    "MockOptions",
    "MockProducer",
    "MockReply",
    "parse_mock_url",
    "response_envelope",
]
