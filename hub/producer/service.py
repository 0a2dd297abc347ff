"""Spyne's side of the producer: dispatch of the one operation, and the generated WSDL.

Spyne runs with soft validation only and never parses the request itself: the endpoint has
already parsed it safely (no DTD, no entities, size cap) and hands the tree over in the WSGI
environ, so the bytes are parsed once and Spyne's own parser, which logs whole bodies on a syntax
error, is never used.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from spyne import Application, Enum, ServiceBase, Unicode, const, rpc
from spyne.error import Fault
from spyne.model.primitive import AnyXml
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from hub.contract.names import ITR_NS, PAYLOAD_TAG, RESPONDER_NS
from hub.contract.serialise import build_response_envelope
from hub.messages import CallMeta, receive

log = logging.getLogger(__name__)

# Spyne runs a full gc.collect() in the request thread at most once a second "to return file
# descriptors"; that stalls every call in flight for tens of milliseconds. We hold no files in
# Spyne contexts, so let Python's own collector do its work.
const.MIN_GC_INTERVAL = float("inf")

ENV_ENVELOPE = "agenthub.envelope"
ENV_REQUEST = "agenthub.request"
ENV_HUB = "agenthub.hub"
ENV_META = "agenthub.meta"
ENV_RAW = "agenthub.raw"


class LogicalAddress(Unicode):  # type: ignore[misc]
    """The RIVTA header element ``itr:LogicalAddress``."""

    __namespace__ = ITR_NS
    __type_name__ = "LogicalAddress"


ResultCode = Enum("OK", "INFO", "ERROR", type_name="ResultCodeEnum")


class PreParsedSoap11(Soap11):  # type: ignore[misc]
    """SOAP 1.1 that takes the envelope the endpoint already parsed safely.

    The endpoint's parse already split the envelope into header and body and checked it; Spyne's
    own split (XPath) and its object mapping of the one argument (an ``AnyXml``, i.e. the element
    itself) would only do that work again on the hot path of every call. Spyne still dispatches
    by the body element's name, calls the service, and writes every fault.
    """

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        """Use the pre-parsed tree from the environ instead of parsing the bytes again."""
        # Spyne expects (root, xml ids); ids (href/id multi-refs) are not part of RIVTA.
        ctx.in_document = (ctx.transport.req_env[ENV_ENVELOPE], {})

    def decompose_incoming_envelope(self, ctx: Any, message: str = Soap11.REQUEST) -> None:
        """Header and body from the endpoint's parse; the body element names the method."""
        request = ctx.transport.req_env[ENV_REQUEST]
        ctx.in_document = request.envelope
        ctx.in_header_doc = None
        ctx.in_body_doc = request.body_element
        ctx.method_request_string = request.body_element.tag

    def deserialize(self, ctx: Any, message: str) -> None:
        """The operation's arguments: the LogicalAddress header and the payload element."""
        if message != self.REQUEST:
            super().deserialize(ctx, message)
            return
        self.event_manager.fire_event("before_deserialize", ctx)
        request = ctx.transport.req_env[ENV_REQUEST]
        ctx.in_header = request.logical_address
        ctx.in_object = [request.body_element.find(PAYLOAD_TAG)]
        self.event_manager.fire_event("after_deserialize", ctx)


class ResponderService(ServiceBase):  # type: ignore[misc]
    """ProcessCervixScreeningInformationResponderService."""

    __service_name__ = "ProcessCervixScreeningInformationResponderService"

    @rpc(  # type: ignore[untyped-decorator]
        AnyXml,
        _in_header=(LogicalAddress,),
        _returns=(ResultCode, Unicode),
        _out_variable_names=("resultCode", "resultText"),
    )
    def ProcessCervixScreeningInformation(ctx: Any, cervixScreeningInformation: Any) -> Any:
        """Hand the call to the inbound service; a technical failure becomes a Server fault."""
        env = ctx.transport.req_env
        request = env[ENV_REQUEST]
        try:
            answer = receive(
                env[ENV_HUB],
                request.body_element,
                request.logical_address,
                env[ENV_RAW],
                env[ENV_META],
            )
        except Exception:
            # Details (which may hold personal data) stay in our log; the caller gets a short text.
            log.exception("inbound call failed (correlation id %s)", env[ENV_META].correlation_id)
            raise Fault("Server", "Technical error in the producer; try again later") from None
        # The answer is one of a few fixed shapes: written by our serialiser (the same bytes every
        # time for OK), which Spyne sends as is instead of building its own tree per call.
        ctx.out_string = [response_bytes(answer.result_code, answer.result_text)]
        return answer.result_code, answer.result_text


@lru_cache(maxsize=64)
def response_bytes(result_code: str, result_text: str | None) -> bytes:
    """The SOAP response for an answer (cached: OK and the common INFO texts repeat)."""
    return build_response_envelope(result_code, result_text)  # type: ignore[arg-type]


def build_spyne_app() -> WsgiApplication:
    """The Spyne WSGI application (one per process; it holds no request state)."""
    application = Application(
        [ResponderService],
        tns=RESPONDER_NS,
        name="ProcessCervixScreeningInformationResponder",
        in_protocol=PreParsedSoap11(validator="soft"),
        out_protocol=Soap11(),
    )
    return WsgiApplication(application)


__all__ = ["ENV_HUB", "ENV_META", "CallMeta", "build_spyne_app"]
