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
_ENVELOPE: Final = f"{{{SOAP11_ENV_NS}}}Envelope"
_HEADER: Final = f"{{{SOAP11_ENV_NS}}}Header"
_BODY: Final = f"{{{SOAP11_ENV_NS}}}Body"

_T = TypeVar("_T")


class MalformedRequest(ValueError):
    """Not a SOAP 1.1 request we can read: answer with a ``soap:Client`` fault (CONTRACT.md §5)."""


class ModelError(ValueError):
    """The payload does not have the shape of the schema (call after XSD validation to avoid it)."""


@dataclass(frozen=True)
class SoapRequest:
    """The parts of a SOAP 1.1 request the hub looks at.

    Parsed without whitespace-only text between elements (``remove_blank_text``): indentation
    carries nothing in this contract, and its elements can be put in canonical form directly
    (``canonical_bytes(..., blank_text_removed=True)``).
    """

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
        envelope = parse_untrusted(body, max_bytes, remove_blank_text=True)
    except UnsafeXml as exc:
        if "DOCTYPE" in str(exc):
            raise MalformedRequest("a DOCTYPE, DTD or entity declaration is not allowed") from None
        raise MalformedRequest("request body is not well-formed XML") from None
    tag = envelope.tag
    if not isinstance(tag, str):
        raise MalformedRequest("request body is not well-formed XML")
    if tag != _ENVELOPE:
        if tag.startswith(f"{{{SOAP12_ENV_NS}}}"):
            raise MalformedRequest("SOAP 1.2 is not supported; send a SOAP 1.1 Envelope")
        raise MalformedRequest("the root element is not a SOAP 1.1 Envelope")

    # The envelope's children read directly: find() goes through ElementPath, which cost as much
    # as the rest of this function on every call.
    header = soap_body = None
    for child in envelope:
        if child.tag == _HEADER and header is None:
            header = child
        elif child.tag == _BODY and soap_body is None:
            soap_body = child
    if soap_body is None:
        raise MalformedRequest("the SOAP Envelope has no Body")
    body_element = next(soap_body.iterchildren(tag=etree.Element), None)
    if body_element is None:
        raise MalformedRequest("the SOAP Body is empty")

    logical_address: str | None = None
    if header is not None:
        # Like the platform: the first element with that local name, whatever its namespace.
        for el in header.iterdescendants(tag=etree.Element):
            if el.tag == "LogicalAddress" or el.tag.endswith("}LogicalAddress"):
                logical_address = el.text or ""
                break
    return SoapRequest(envelope, body_element, logical_address)


# --- payload → model -------------------------------------------------------------------------


def _q(name: str) -> str:
    return f"{{{CORE_NS}}}{name}"


_Children = dict[str, etree._Element]


def _children(el: etree._Element) -> _Children:
    # One pass over an element's children into a map, then dictionary look-ups: the model reads
    # some forty children per message, and a search per child (find() or iterchildren(tag))
    # made building the model cost seven times the XSD validation. The first of equal tags
    # wins, as with find(); repeated elements are read with iterchildren.
    kids: _Children = {}
    for child in el:
        kids.setdefault(child.tag, child)
    return kids


def _one(kids: _Children, parent: etree._Element, name: str) -> etree._Element:
    el = kids.get(_q(name))
    if el is None:
        raise ModelError(f"{_local(parent)}/{name} is missing")
    return el


def _text(kids: _Children, parent: etree._Element, name: str) -> str:
    return _one(kids, parent, name).text or ""


def _opt_text(kids: _Children, name: str) -> str | None:
    el = kids.get(_q(name))
    return None if el is None else (el.text or "")


def _opt(kids: _Children, name: str, build: Callable[[etree._Element], _T]) -> _T | None:
    el = kids.get(_q(name))
    return None if el is None else build(el)


def _ii(el: etree._Element) -> II:
    kids = _children(el)
    return II(root=_text(kids, el, "root"), extension=_opt_text(kids, "extension"))


def _cv(el: etree._Element) -> CV:
    kids = _children(el)
    return CV(
        code=_text(kids, el, "code"),
        code_system=_text(kids, el, "codeSystem"),
        code_system_name=_opt_text(kids, "codeSystemName"),
        code_system_version=_opt_text(kids, "codeSystemVersion"),
        display_name=_opt_text(kids, "displayName"),
        original_text=_opt_text(kids, "originalText"),
    )


def _organisation(el: etree._Element) -> Organisation:
    kids = _children(el)
    return Organisation(id=_ii(_one(kids, el, "id")), name=_text(kids, el, "name"))


def _region(el: etree._Element) -> Region:
    kids = _children(el)
    return Region(
        region=_organisation(_one(kids, el, "region")),
        care_giver=_opt(kids, "careGiver", _organisation),
        care_unit=_opt(kids, "careUnit", _organisation),
    )


def _exclusion(el: etree._Element) -> Exclusion:
    kids = _children(el)
    return Exclusion(
        reason=_cv(_one(kids, el, "reason")),
        registered_at=_text(kids, el, "registeredAt"),
        original_region=_region(_one(kids, el, "originalRegion")),
    )


def _follow_up(el: etree._Element) -> FollowUpGroup:
    kids = _children(el)
    return FollowUpGroup(
        type=_cv(_one(kids, el, "type")),
        inclusion_date=_text(kids, el, "inclusionDate"),
        original_region=_region(_one(kids, el, "originalRegion")),
    )


def _hpv_status(el: etree._Element) -> HPVStatus:
    return HPVStatus(value=_cv(_one(_children(el), el, "value")))


def _specimen(el: etree._Element) -> Specimen:
    kids = _children(el)
    return Specimen(
        specimen_date=_text(kids, el, "specimenDate"),
        original_region=_region(_one(kids, el, "originalRegion")),
        hpv_status_list=tuple(_hpv_status(h) for h in el.iterchildren(_q("HPVstatusList"))),
    )


def _planned(el: etree._Element) -> PlannedInvitation:
    kids = _children(el)
    return PlannedInvitation(date=_text(kids, el, "date"), reason=_opt_text(kids, "reason"))


def information_from_element(el: etree._Element) -> CervixScreeningInformation:
    """Build the model from a ``cervixScreeningInformation`` element.

    Expects a schema-valid element; raises :class:`ModelError` (data-free) if a required child is
    missing.
    """
    kids = _children(el)
    subject = _one(kids, el, "subjectOfCare")
    return CervixScreeningInformation(
        subject_of_care=Person(person_id=_ii(_one(_children(subject), subject, "personId"))),
        sending_region=_region(_one(kids, el, "sendingRegion")),
        exclusion=_opt(kids, "exclusion", _exclusion),
        follow_up_groups=tuple(_follow_up(f) for f in el.iterchildren(_q("followUpGroups"))),
        planned_invitation=_opt(kids, "plannedInvitation", _planned),
        specimen=_opt(kids, "specimen", _specimen),
    )
