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

from spyne import Application, Enum, MethodContext, ServiceBase, Unicode, const, rpc
from spyne.error import Fault, ResourceNotFoundError
from spyne.model.primitive import AnyXml
from spyne.protocol.soap import Soap11
from spyne.server.http import HttpBase

from hub.contract.names import ITR_NS, PAYLOAD_TAG, RESPONDER_NS
from hub.contract.serialise import build_response_envelope
from hub.inbound.service import receive
from hub.logs import loggable_id

log = logging.getLogger(__name__)

# Spyne runs a full gc.collect() in the request thread at most once a second "to return file
# descriptors"; that stalls every call in flight for tens of milliseconds. We hold no files in
# Spyne contexts, so let Python's own collector do its work.
const.MIN_GC_INTERVAL = float("inf")

ENV_REQUEST = "agenthub.request"
ENV_HUB = "agenthub.hub"
ENV_META = "agenthub.meta"
ENV_RAW = "agenthub.raw"


class LogicalAddress(Unicode):  # type: ignore[misc]
    """The RIVTA header element ``itr:LogicalAddress``."""

    __namespace__ = ITR_NS
    __type_name__ = "LogicalAddress"


ResultCode = Enum("OK", "INFO", "ERROR", type_name="ResultCodeEnum")


class UnknownOperation(ResourceNotFoundError):  # type: ignore[misc]
    """The body element names no operation of this service: Spyne's fault, with a fixed text.

    Spyne's own text repeats the element's qualified name, which the sender chose freely.
    """

    def __init__(self) -> None:
        Fault.__init__(
            self,
            self.CODE,
            "The first element of the SOAP Body is not an operation of this service",
        )


class PreParsedSoap11(Soap11):  # type: ignore[misc]
    """SOAP 1.1 that takes the envelope the endpoint already parsed safely.

    The endpoint's parse already split the envelope into header and body and checked it; Spyne's
    own split (XPath) and its object mapping of the one argument (an ``AnyXml``, i.e. the element
    itself) would only do that work again on the hot path of every call. Spyne still dispatches
    by the body element's name, calls the service, and writes every fault.
    """

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        """Use the endpoint's parse from the environ instead of parsing the bytes again."""
        # Spyne expects (root, xml ids); ids (href/id multi-refs) are not part of RIVTA.
        ctx.in_document = (ctx.transport.req_env[ENV_REQUEST].envelope, {})

    def decompose_incoming_envelope(self, ctx: Any, message: str = Soap11.REQUEST) -> None:
        """Header and body from the endpoint's parse; the body element names the method."""
        request = ctx.transport.req_env[ENV_REQUEST]
        ctx.in_document = request.envelope
        ctx.in_header_doc = None
        ctx.in_body_doc = request.body_element
        ctx.method_request_string = request.body_element.tag

    def generate_method_contexts(self, ctx: Any) -> list[Any]:
        """The context for the method the body element names (Spyne's own method map).

        The one operation has one handler, so the context is used as it is; Spyne's default
        copies it for each handler, on every call, to support fan-out to auxiliary methods.
        """
        handles = self.get_call_handles(ctx)
        if not handles:
            raise UnknownOperation()
        if len(handles) > 1:
            return list(super().generate_method_contexts(ctx))
        ctx.descriptor = handles[0]
        return [ctx]

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
            log.exception(
                "inbound call failed (correlation id %s)",
                loggable_id(env[ENV_META].correlation_id),
            )
            raise Fault("Server", "Technical error in the producer; try again later") from None
        # The answer is one of a few fixed shapes: written by our serialiser (the same bytes every
        # time for OK), which Spyne sends as is instead of building its own tree per call.
        ctx.out_string = [response_bytes(answer.result_code, answer.result_text)]
        return answer.result_code, answer.result_text


@lru_cache(maxsize=64)
def response_bytes(result_code: str, result_text: str | None) -> bytes:
    """The SOAP response for an answer (cached: OK and the common INFO texts repeat)."""
    return build_response_envelope(result_code, result_text)  # type: ignore[arg-type]


class _CallContext(MethodContext):  # type: ignore[misc]
    """Spyne's method context with plain attribute writes and events fired without allocation.

    Spyne routes each of the fifty-odd attribute writes of a context's construction through a
    Python ``__setattr__`` (a guard against user code adding attributes after construction;
    ours adds none), and its event manager builds an empty ordered set for every event nobody
    listens to (eight per call). Together that was a large part of Spyne's own cost. The
    listeners registered on the application and on the service, if any, still run in order.
    """

    __setattr__ = object.__setattr__

    def fire_event(self, event: str, *args: Any, **kwargs: Any) -> None:
        """Run the application's listeners for ``event``, then the service's."""
        for handler in self.app.event_manager.handlers.get(event, ()):
            handler(self, *args, **kwargs)
        descriptor = self.descriptor
        if descriptor is not None:
            for manager in descriptor.event_managers:
                for handler in manager.handlers.get(event, ()):
                    handler(self, *args, **kwargs)


class PreParsedServer(HttpBase):  # type: ignore[misc]
    """Spyne's server for SOAP over HTTP whose request the endpoint has already read and parsed.

    Spyne's WSGI server would build an HTTP context per call (headers parsed again, the body
    re-read into chunks, the content type parsed) and fire its WSGI events: work the endpoint has
    done or does not need, and together a large share of the producer's CPU under load
    (bench/inbound.py). This server keeps Spyne's own steps of a call: the method context, the
    protocol's dispatch by the body element's name, deserialisation, the call of the service with
    Spyne's fault handling, and serialisation of the answer or the fault.
    """

    def dispatch(self, environ: dict[str, Any]) -> tuple[str, bytes]:
        """Run one call through Spyne; return the HTTP status and the SOAP response body.

        ``environ`` carries the endpoint's parse (``ENV_REQUEST`` and the other ``ENV_*`` keys).
        """
        ctx = _CallContext(self, MethodContext.SERVER)
        ctx.transport.req_env = environ
        contexts = self.generate_contexts(ctx)
        ctx = contexts[0]
        if ctx.in_error is None:
            self.get_in_object(ctx)
        if ctx.in_error is None:
            self.get_out_object(ctx)
        error = ctx.in_error or ctx.out_error
        status = "200 OK"
        if error is not None:
            # A fault: Spyne's SOAP 1.1 protocol writes it and names its HTTP status (500).
            status = ctx.out_protocol.fault_to_http_response_code(error)
        self.get_out_string(ctx)
        body = b"".join(ctx.out_string)
        ctx.close()
        return status, body


def build_spyne_app() -> PreParsedServer:
    """The Spyne server of the producer (one per process; it holds no request state)."""
    application = Application(
        [ResponderService],
        tns=RESPONDER_NS,
        name="ProcessCervixScreeningInformationResponder",
        in_protocol=PreParsedSoap11(validator="soft"),
        out_protocol=Soap11(),
    )
    return PreParsedServer(application)


__all__ = ["ENV_HUB", "ENV_META", "ENV_RAW", "ENV_REQUEST", "PreParsedServer", "build_spyne_app"]
