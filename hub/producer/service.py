"""Spyne's side of the producer: dispatch of the one operation, and the generated WSDL.

Spyne runs with soft validation only and never parses the request itself: the endpoint has
already parsed it safely (no DTD, no entities, size cap) and hands the tree over in the WSGI
environ, so the bytes are parsed once and Spyne's own parser, which logs whole bodies on a syntax
error, is never used.
"""

from __future__ import annotations

import logging
from typing import Any

from spyne import Application, Enum, ServiceBase, Unicode, const, rpc
from spyne.error import Fault
from spyne.model.primitive import AnyXml
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from hub.contract.names import ITR_NS, RESPONDER_NS
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
    """SOAP 1.1 that takes the envelope the endpoint already parsed safely."""

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        """Use the pre-parsed tree from the environ instead of parsing the bytes again."""
        # Spyne expects (root, xml ids); ids (href/id multi-refs) are not part of RIVTA.
        ctx.in_document = (ctx.transport.req_env[ENV_ENVELOPE], {})


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
        return answer.result_code, answer.result_text


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
