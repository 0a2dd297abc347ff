"""Receive one inbound call: validate it, route it to its member region, store it, answer.

The region comes from the registry (the router), never from request data, and only that
region's engine is opened: region A's code path holds no handle on region B's store.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from hub.clock import swedish_today
from hub.context import Hub
from hub.contract.names import PAYLOAD_TAG
from hub.contract.validate import validate_request
from hub.inbound.store import CallMeta, NotReceiving, store_message


@dataclass(frozen=True)
class Answer:
    """The producer's answer: OK / INFO / ERROR, with a text for INFO and ERROR."""

    result_code: str
    result_text: str | None
    message_id: str | None = None
    lan_code: str | None = None
    duplicate: bool = False


def receive(
    hub: Hub,
    body_element: etree._Element,
    logical_address: str | None,
    raw_body: bytes,
    meta: CallMeta,
) -> Answer:
    """Validate, route and store one inbound ProcessCervixScreeningInformation call.

    ``body_element`` is the operation element as :func:`hub.contract.parse.parse_request` read it.

    ERROR answers store nothing in any region (the call counts as not received). A resend of the
    same content to the same region is stored once and gets the first answer again. A region
    that was ended (or its key destroyed) gets ERROR at once, whichever process ended it: not a
    fault, which the platform would resend for the rest of the day.
    """
    # A batch being written waits for this call while it is validated (hub.inbound.groupcommit).
    hub.inbound.announce()
    try:
        today = swedish_today()
        verdict = validate_request(body_element, logical_address, today=today, codes=hub.codes)
        route = hub.router.route(logical_address, today)
        if route.region is None or verdict.result_code == "ERROR" or verdict.information is None:
            texts = [t for t in (route.reason, verdict.result_text()) if t]
            return Answer("ERROR", "; ".join(texts) or "the request was refused")
        info_element = body_element.find(PAYLOAD_TAG)
        assert info_element is not None  # the XSD made sure it is there
        lan_code = route.region.lan_code
        try:
            stored = store_message(
                hub,
                lan_code,
                verdict.information,
                info_element,
                raw_body,
                verdict.result_code,
                verdict.result_text(),
                meta,
                logical_address or "",
            )
        except NotReceiving as refused:
            return Answer("ERROR", str(refused))
        return Answer(
            stored.result_code, stored.result_text, stored.message_id, lan_code, stored.duplicate
        )
    finally:
        hub.inbound.withdraw()
