"""Read a SOAP 1.1 request and its payload (CONTRACT.md §2, §5, §6).

Everything here runs on untrusted bytes before any validation, so errors carry fixed, data-free
messages: they end up in a SOAP Fault that goes back over the platform.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from hub.contract.model import (
    CV,
    II,
    CervixScreeningInformation,
    Exclusion,
    FollowUpGroup,
    HPVStatus,
    Organisation,
    Person,
    PlannedInvitation,
    Region,
    Specimen,
)
from hub.contract.names import CORE_NS, MAX_PAYLOAD_BYTES, SOAP11_ENV_NS
from hub.contract.xmlsafe import UnsafeXml, parse_untrusted

SOAP12_ENV_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
_ROOT_START_RE: Final = re.compile(rb"<[A-Za-z_]")

_T = TypeVar("_T")


class MalformedRequest(ValueError):
    """Not a SOAP 1.1 request we can read: answer with a ``soap:Client`` fault (CONTRACT.md §5)."""


class ModelError(ValueError):
    """The payload does not have the shape of the schema (call after XSD validation to avoid it)."""


@dataclass(frozen=True)
class SoapRequest:
    """The parts of a SOAP 1.1 request the hub looks at."""

    envelope: etree._Element
    body_element: etree._Element
    # Text of the first header element named LogicalAddress, untrimmed, as the platform reads it;
    # "" if present but empty, None if absent.
    logical_address: str | None


def _local(el: etree._Element) -> str:
    return str(etree.QName(el).localname)


def parse_request(body: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> SoapRequest:
    """Parse ``body`` as a SOAP 1.1 envelope.

    Raises :class:`MalformedRequest` for oversize input, a DOCTYPE/entities, malformed XML, a root
    that is not a SOAP 1.1 Envelope, or a missing or empty Body.
    """
    # Checked here as well as in parse_untrusted so the message can be ours, with no data in it.
    if len(body) > max_bytes:
        raise MalformedRequest(f"request body is larger than the limit of {max_bytes} bytes")
    # Refuse a DOCTYPE before libxml2 reads any of it: entity declarations are the attack (billion
    # laughs, external entities), and a fixed message beats whatever libxml2 would trip on first.
    # A DOCTYPE can only stand in the prolog, before the root element's start tag.
    root_start = _ROOT_START_RE.search(body)
    if b"<!DOCTYPE" in body[: root_start.start() if root_start else len(body)]:
        raise MalformedRequest("a DOCTYPE, DTD or entity declaration is not allowed")
    try:
        envelope = parse_untrusted(body, max_bytes)
    except UnsafeXml as exc:
        if "DOCTYPE" in str(exc):
            raise MalformedRequest("a DOCTYPE, DTD or entity declaration is not allowed") from None
        raise MalformedRequest("request body is not well-formed XML") from None
    if not isinstance(envelope.tag, str):
        raise MalformedRequest("request body is not well-formed XML")
    qname = etree.QName(envelope)
    if qname.namespace == SOAP12_ENV_NS:
        raise MalformedRequest("SOAP 1.2 is not supported; send a SOAP 1.1 Envelope")
    if qname.namespace != SOAP11_ENV_NS or qname.localname != "Envelope":
        raise MalformedRequest("the root element is not a SOAP 1.1 Envelope")

    header = envelope.find(f"{{{SOAP11_ENV_NS}}}Header")
    soap_body = envelope.find(f"{{{SOAP11_ENV_NS}}}Body")
    if soap_body is None:
        raise MalformedRequest("the SOAP Envelope has no Body")
    body_element = next(iter(soap_body.iterchildren(tag=etree.Element)), None)
    if body_element is None:
        raise MalformedRequest("the SOAP Body is empty")

    logical_address: str | None = None
    if header is not None:
        # Like the platform: the first element with that local name, whatever its namespace.
        for el in header.iterdescendants(tag=etree.Element):
            if _local(el) == "LogicalAddress":
                logical_address = el.text or ""
                break
    return SoapRequest(envelope, body_element, logical_address)


# --- payload → model -------------------------------------------------------------------------


def _q(name: str) -> str:
    return f"{{{CORE_NS}}}{name}"


def _find(parent: etree._Element, name: str) -> etree._Element | None:
    # iterchildren with a tag filter runs in C; find() goes through ElementPath (twice the cost,
    # and the model reads some twenty children per message).
    return next(parent.iterchildren(_q(name)), None)


def _one(parent: etree._Element, name: str) -> etree._Element:
    el = _find(parent, name)
    if el is None:
        raise ModelError(f"{_local(parent)}/{name} is missing")
    return el


def _text(parent: etree._Element, name: str) -> str:
    return _one(parent, name).text or ""


def _opt_text(parent: etree._Element, name: str) -> str | None:
    el = _find(parent, name)
    return None if el is None else (el.text or "")


def _opt(parent: etree._Element, name: str, build: Callable[[etree._Element], _T]) -> _T | None:
    el = _find(parent, name)
    return None if el is None else build(el)


def _ii(el: etree._Element) -> II:
    return II(root=_text(el, "root"), extension=_opt_text(el, "extension"))


def _cv(el: etree._Element) -> CV:
    return CV(
        code=_text(el, "code"),
        code_system=_text(el, "codeSystem"),
        code_system_name=_opt_text(el, "codeSystemName"),
        code_system_version=_opt_text(el, "codeSystemVersion"),
        display_name=_opt_text(el, "displayName"),
        original_text=_opt_text(el, "originalText"),
    )


def _organisation(el: etree._Element) -> Organisation:
    return Organisation(id=_ii(_one(el, "id")), name=_text(el, "name"))


def _region(el: etree._Element) -> Region:
    return Region(
        region=_organisation(_one(el, "region")),
        care_giver=_opt(el, "careGiver", _organisation),
        care_unit=_opt(el, "careUnit", _organisation),
    )


def _exclusion(el: etree._Element) -> Exclusion:
    return Exclusion(
        reason=_cv(_one(el, "reason")),
        registered_at=_text(el, "registeredAt"),
        original_region=_region(_one(el, "originalRegion")),
    )


def _follow_up(el: etree._Element) -> FollowUpGroup:
    return FollowUpGroup(
        type=_cv(_one(el, "type")),
        inclusion_date=_text(el, "inclusionDate"),
        original_region=_region(_one(el, "originalRegion")),
    )


def _specimen(el: etree._Element) -> Specimen:
    return Specimen(
        specimen_date=_text(el, "specimenDate"),
        original_region=_region(_one(el, "originalRegion")),
        hpv_status_list=tuple(
            HPVStatus(value=_cv(_one(h, "value"))) for h in el.iterfind(_q("HPVstatusList"))
        ),
    )


def _planned(el: etree._Element) -> PlannedInvitation:
    return PlannedInvitation(date=_text(el, "date"), reason=_opt_text(el, "reason"))


def information_from_element(el: etree._Element) -> CervixScreeningInformation:
    """Build the model from a ``cervixScreeningInformation`` element.

    Expects a schema-valid element; raises :class:`ModelError` (data-free) if a required child is
    missing.
    """
    return CervixScreeningInformation(
        subject_of_care=Person(person_id=_ii(_one(_one(el, "subjectOfCare"), "personId"))),
        sending_region=_region(_one(el, "sendingRegion")),
        exclusion=_opt(el, "exclusion", _exclusion),
        follow_up_groups=tuple(_follow_up(f) for f in el.iterfind(_q("followUpGroups"))),
        planned_invitation=_opt(el, "plannedInvitation", _planned),
        specimen=_opt(el, "specimen", _specimen),
    )
