"""The NTjP client: envelopes built by zeep from ``wsdl/``, calls over a mutual-TLS session.

Two halves, used at different times:

- :func:`build_envelope` runs when a record is approved. zeep, reading our own WSDL from the local
  file (a session that refuses every network access loads it), writes the request with the
  ``LogicalAddress`` header. The bytes are stored sealed in the outbox and sent unchanged on every
  attempt: the producer's idempotency sees the same message, and the log holds what was sent.
- :class:`NtjpClient` posts those bytes to the platform with SOAPAction and the correlation id,
  over a ``requests`` session carrying the agent's certificate and the platform's CA bundle, and
  turns whatever happens into a :class:`CallResult` that the resend policy (rule #22) acts on.
  Each call has a hard deadline for the whole exchange (:mod:`hub.outbound.deadline`), so a
  destination that trickles its answer cannot keep a call open past it.
"""

from __future__ import annotations

import copy
import http.client
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

import requests
import urllib3
import zeep
from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from hub.contract.names import (
    HDR_CORRELATION_ID,
    OPERATION,
    OPERATION_TAG,
    RESPONDER_NS,
    RESPONSE_TAG,
    SOAP11_ENV_NS,
)
from hub.contract.personnummer import mask_text
from hub.contract.wsdl import PORT, SERVICE, WSDL_FILE, wsdl_dir
from hub.contract.xmlsafe import UnsafeXml, parse_untrusted
from hub.outbound.deadline import CallGuard, Deadlines, guarded_session
from hub.outbound.settings import ConsumerSettings, DestinationPolicy

_FAULT_TAG: Final = f"{{{SOAP11_ENV_NS}}}Fault"
_VP_RE: Final = re.compile(r"^\s*(VP[0-9]{3})\b")
# Answers are small; a huge one is not a contract answer and must not fill memory.
MAX_RESPONSE_BYTES: Final = 1024 * 1024
# Texts kept for operators are cut here; a producer's essay helps nobody in a list.
MAX_TEXT: Final = 1000

#: Platform faults that mean "fix the configuration", never "try again" (docs/contract.md).
CONFIGURATION_FAULTS: Final = frozenset(
    {"VP002", "VP003", "VP004", "VP005", "VP006", "VP007", "VP010", "VP011", "VP013", "VP015"}
)
#: Platform faults worth another attempt: the producer was unreachable or timed out.
TRANSIENT_FAULTS: Final = frozenset({"VP009"})

Outcome = Literal["delivered", "refused", "retry", "config"]


class _NoNetwork(requests.adapters.BaseAdapter):
    """Refuses every request: the WSDL and its schemas are read from ``wsdl/`` only."""

    def send(self, *args: Any, **kwargs: Any) -> requests.Response:
        raise requests.ConnectionError("the contract is loaded from wsdl/, never from the network")

    def close(self) -> None:
        """Nothing to close."""


def _offline_zeep_client() -> Any:
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", _NoNetwork())
    session.mount("https://", _NoNetwork())
    zeep_settings = zeep.Settings(
        strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    return zeep.Client(  # type: ignore[no-untyped-call]
        str(wsdl_dir() / WSDL_FILE),
        transport=zeep.Transport(session=session),  # type: ignore[no-untyped-call]
        settings=zeep_settings,
    )


_local = threading.local()


def zeep_client() -> Any:
    """This thread's zeep client of our WSDL (zeep objects are not documented as thread-safe)."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _offline_zeep_client()
        _local.client = client
    return client


def soap_action() -> str:
    """The operation's SOAPAction, as the WSDL binding declares it."""
    binding = zeep_client().wsdl.services[SERVICE].ports[PORT].binding
    return str(binding.get(OPERATION).soapaction)


def build_envelope(to_lan: str, payload: etree._Element) -> bytes:
    """The SOAP request to ``to_lan`` carrying ``payload``, written by zeep from the WSDL.

    ``payload`` is a ``cervixScreeningInformation`` element or the whole operation element; it is
    read through the schema, so anything that is not the contract's shape fails here (call after
    validation). Unknown foreign-namespace extensions inside the payload are kept.
    """
    client = zeep_client()
    if payload.tag == OPERATION_TAG:
        operation = payload
    else:
        operation = etree.Element(OPERATION_TAG)
        operation.append(copy.deepcopy(payload))
    parsed = client.get_element(OPERATION_TAG).parse(operation, client.wsdl.types)
    envelope = client.create_message(
        client.service,
        OPERATION,
        cervixScreeningInformation=parsed.cervixScreeningInformation,
        _soapheaders={"LogicalAddress": to_lan},
    )
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


@dataclass(frozen=True)
class CallResult:
    """What one call led to, for the resend policy and the region's log.

    ``outcome``: delivered (OK/INFO), refused (ERROR: final), retry (timeout, connection error,
    an answer cut off, 5xx without SOAP, VP009, a producer's soap:Server fault, a call cut short
    because the worker stopped) or config (a configuration fault: stop and alert). ``code`` is
    the short reason (OK, INFO, ERROR, VP004, TIMEOUT, BROKEN, INTERRUPTED, HTTP502, …).
    ``text`` is masked and safe to show an operator.
    """

    outcome: Outcome
    code: str
    text: str | None = None
    http_status: int | None = None
    response: bytes | None = None
    correlation_id: str | None = None
    duration_ms: int = 0

    @property
    def result_code(self) -> str | None:
        """The producer's resultCode when there was one."""
        return self.code if self.code in ("OK", "INFO", "ERROR") else None


def _short(text: str | None) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return mask_text(text)[:MAX_TEXT]


def _first_body_child(envelope: etree._Element) -> etree._Element | None:
    body = envelope.find(f"{{{SOAP11_ENV_NS}}}Body")
    if body is None:
        return None
    return next(iter(body.iterchildren(tag=etree.Element)), None)


def classify_response(status: int, body: bytes) -> tuple[Outcome, str, str | None]:
    """Read an HTTP answer: (outcome, code, masked text). Pure, so every branch is unit-tested."""
    element: etree._Element | None = None
    if body:
        try:
            envelope = parse_untrusted(body, MAX_RESPONSE_BYTES)
            if envelope.tag == f"{{{SOAP11_ENV_NS}}}Envelope":
                element = _first_body_child(envelope)
        except UnsafeXml:
            element = None
    if element is not None and element.tag == _FAULT_TAG:
        faultcode = (element.findtext("faultcode") or "").strip()
        faultstring = (element.findtext("faultstring") or "").strip()
        detail = element.findtext("detail/detailString")
        text = _short(f"{faultstring} ({detail.strip()})" if detail else faultstring)
        vp = _VP_RE.match(faultstring)
        if vp:
            code = vp.group(1)
            # VP009 is worth another try; every other platform fault (the listed configuration
            # faults, and VP014 routing loops or codes we do not know) needs a person.
            return ("retry" if code in TRANSIENT_FAULTS else "config"), code, text
        if faultcode.endswith("Client"):
            # The producer could not read what we sent: the same bytes will never do better.
            return "config", "FAULT-CLIENT", text
        return "retry", "FAULT", text
    if status == 200 and element is not None and element.tag == RESPONSE_TAG:
        result = (element.findtext(f"{{{RESPONDER_NS}}}resultCode") or "").strip()
        text = _short(element.findtext(f"{{{RESPONDER_NS}}}resultText"))
        if result in ("OK", "INFO"):
            return "delivered", result, text
        if result == "ERROR":
            return "refused", "ERROR", text or "ERROR without resultText"
        return "retry", "UNREADABLE", f"unknown resultCode {result[:20]!r}"
    if status >= 500 or status in (408, 429):
        # A 5xx without SOAP is a proxy or a crashed producer: transient by rule #22.
        return "retry", f"HTTP{status}", f"HTTP {status} without a SOAP answer"
    if status == 200:
        # Not a contract answer; the call may have been processed, and the producer is idempotent.
        return "retry", "UNREADABLE", "HTTP 200 without a ProcessCervixScreeningInformationResponse"
    # 3xx/4xx without SOAP: a wrong URL or a proxy refusing us; retrying will not fix that.
    return "config", f"HTTP{status}", f"HTTP {status} without a SOAP answer"


class NtjpClient:
    """Posts request envelopes to NTjP; one instance is shared by every sender thread.

    ``requests.Session`` is not documented as thread-safe, so each thread gets its own session
    with the same certificate, CA bundle and headers; connections are kept alive per thread.
    """

    def __init__(self, settings: ConsumerSettings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._soap_action = f'"{soap_action()}"'
        self._deadlines = Deadlines()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = guarded_session()
            # An HTTP(S)_PROXY in a worker's environment must not silently carry health data.
            session.trust_env = False
            if self.settings.client_cert is not None and self.settings.client_key is not None:
                session.cert = (str(self.settings.client_cert), str(self.settings.client_key))
            session.verify = str(self.settings.ca_bundle) if self.settings.ca_bundle else True
            session.headers.update(
                {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": self._soap_action}
            )
            if self.settings.dev_identity_header:
                session.headers[self.settings.dev_identity_header] = self.settings.agent_hsaid
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def call(self, envelope: bytes, correlation_id: str, policy: DestinationPolicy) -> CallResult:
        """Post one request and classify the outcome; never raises for transport problems.

        The whole exchange (connect, send, headers, body) ends by ``policy.deadline_s``: a call
        past it is cut off and coded ``TIMEOUT``, an answer that breaks off ``BROKEN``, a call
        cut short by :meth:`interrupt` ``INTERRUPTED``; each is worth another attempt.
        """
        started = time.monotonic()

        def took() -> int:
            return round((time.monotonic() - started) * 1000)

        with self._deadlines.call(policy.deadline_s) as guard:
            try:
                answer = self._session().post(
                    self.settings.ntjp_url,
                    data=envelope,
                    headers={HDR_CORRELATION_ID: correlation_id},
                    timeout=(policy.connect_timeout_ms / 1000, policy.timeout_ms / 1000),
                    allow_redirects=False,
                    stream=True,
                )
            except requests.RequestException as exc:
                if guard.expired:
                    return _cut_short(guard, policy, None, took())
                return _transport_failure(exc, took())
            try:
                body = answer.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
            except _BODY_ERRORS as exc:
                if guard.expired:
                    return _cut_short(guard, policy, answer.status_code, took())
                timed_out = isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError))
                return CallResult(
                    "retry",
                    "TIMEOUT" if timed_out else "BROKEN",
                    f"answer {'stalled' if timed_out else 'broke off'} ({type(exc).__name__})",
                    http_status=answer.status_code,
                    duration_ms=took(),
                )
            finally:
                answer.close()
        outcome, code, text = classify_response(answer.status_code, body)
        return CallResult(
            outcome,
            code,
            text,
            answer.status_code,
            body[:MAX_RESPONSE_BYTES],
            answer.headers.get(HDR_CORRELATION_ID),
            took(),
        )

    def interrupt(self) -> None:
        """Cut every call in flight short (each returns ``INTERRUPTED``), and every later one."""
        self._deadlines.interrupt()

    def close(self) -> None:
        """Close every thread's session."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._deadlines.close()


# What reading an answer's body raises when the answer is cut off, stalls or cannot be decoded:
# urllib3's own errors (ProtocolError for a short body, ReadTimeoutError, DecodeError) are not
# OSErrors, and are not wrapped by requests when the body is read from ``raw``.
_BODY_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


def _transport_failure(exc: requests.RequestException, duration_ms: int) -> CallResult:
    """The result of a call that got no answer: connection, TLS or timeout trouble."""
    if isinstance(exc, requests.exceptions.SSLError):
        # A certificate or CA problem does not heal by itself.
        return CallResult(
            "config", "TLS", _short(f"TLS: {type(exc).__name__}"), None, duration_ms=duration_ms
        )
    if isinstance(exc, requests.Timeout):
        return CallResult(
            "retry",
            "TIMEOUT",
            f"no answer in time ({type(exc).__name__})",
            duration_ms=duration_ms,
        )
    if isinstance(exc, requests.ConnectionError):
        return CallResult(
            "retry",
            "CONNECT",
            f"connection failed ({type(exc).__name__})",
            duration_ms=duration_ms,
        )
    return CallResult(
        "retry", "TRANSPORT", f"transport error ({type(exc).__name__})", duration_ms=duration_ms
    )


def _cut_short(
    guard: CallGuard, policy: DestinationPolicy, status: int | None, duration_ms: int
) -> CallResult:
    """The result of a call its guard cut off: at the deadline, or because the worker stops."""
    if guard.why == "interrupted":
        return CallResult(
            "retry",
            "INTERRUPTED",
            "the call was cut short: the worker stopped",
            http_status=status,
            duration_ms=duration_ms,
        )
    return CallResult(
        "retry",
        "TIMEOUT",
        f"no complete answer within the call's deadline of {policy.deadline_s:g} s",
        http_status=status,
        duration_ms=duration_ms,
    )
