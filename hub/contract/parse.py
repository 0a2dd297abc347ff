"""Read a SOAP 1.1 request and its payload (docs/contract.md).

Everything here runs on untrusted bytes before any validation, so errors carry fixed, data-free
messages: they end up in a SOAP Fault that goes back over the platform.
"""

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

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
from hub.contract.wsdl import declared_element_names
from hub.contract.xmlsafe import UnsafeXml, XmlLimits, XmlTooComplex, parse_untrusted

SOAP12_ENV_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
_ROOT_START_RE: Final = re.compile(rb"<[A-Za-z_]")
_ENVELOPE: Final = f"{{{SOAP11_ENV_NS}}}Envelope"
_HEADER: Final = f"{{{SOAP11_ENV_NS}}}Header"
_BODY: Final = f"{{{SOAP11_ENV_NS}}}Body"


class MalformedRequest(ValueError):
    """Not a SOAP 1.1 request we can read: answer with a ``soap:Client`` fault."""


class MustUnderstand(MalformedRequest):
    """A header entry for us marked ``mustUnderstand="1"`` that we do not understand: answer
    with a ``soap:MustUnderstand`` fault (SOAP 1.1 section 4.2.3)."""


# The only header entry the hub understands (reads and acts on), by local name in any
# namespace, as the platform reads it.
_UNDERSTOOD: Final = "LogicalAddress"
_MUST_UNDERSTAND: Final = f"{{{SOAP11_ENV_NS}}}mustUnderstand"
_ACTOR: Final = f"{{{SOAP11_ENV_NS}}}actor"
_NEXT_ACTOR: Final = "http://schemas.xmlsoap.org/soap/actor/next"


# The shape a request may have, checked while it is parsed (docs/producer.md). Each bound is far
# above what a real message of this contract needs -- the shipped samples and the test messages
# have at most 68 elements, depth 9, no attributes, 5 namespace declarations on one element and
# 7 in all, 11 extension elements, names of 41 and namespaces of 94 characters -- and low enough
# that the worst message within them costs the producer a fraction of a second.
REQUEST_ELEMENTS: Final = 10_000
REQUEST_DEPTH: Final = 32
REQUEST_ATTRIBUTES: Final = 32
REQUEST_ATTRIBUTES_TOTAL: Final = 10_000
REQUEST_NAMESPACES_PER_ELEMENT: Final = 32
REQUEST_NAMESPACES: Final = 1_000
REQUEST_NAME_CHARS: Final = 256
REQUEST_NAMESPACE_CHARS: Final = 512
REQUEST_UNKNOWN_ELEMENTS: Final = 1_000


@lru_cache(maxsize=1)
def request_limits() -> XmlLimits:
    """The :class:`XmlLimits` of a request: the numbers above, the contract's names as known."""
    envelope = {_ENVELOPE, _HEADER, _BODY}
    return XmlLimits(
        elements=REQUEST_ELEMENTS,
        depth=REQUEST_DEPTH,
        attributes=REQUEST_ATTRIBUTES,
        attributes_total=REQUEST_ATTRIBUTES_TOTAL,
        namespaces_per_element=REQUEST_NAMESPACES_PER_ELEMENT,
        namespaces=REQUEST_NAMESPACES,
        name_chars=REQUEST_NAME_CHARS,
        namespace_chars=REQUEST_NAMESPACE_CHARS,
        unknown_elements=REQUEST_UNKNOWN_ELEMENTS,
        known=frozenset(envelope | declared_element_names()),
    )


class ModelError(ValueError):
    """The payload does not have the shape of the schema (call after XSD validation to avoid it)."""


@dataclass(frozen=True)
class SoapRequest:
    """The parts of a SOAP 1.1 request the hub looks at.

    Parsed without whitespace-only text between elements (``remove_blank_text``): indentation
    carries nothing in this contract.
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

    Raises :class:`MalformedRequest` for oversize input, a DOCTYPE/entities, malformed XML, a
    document over :func:`request_limits`, a root that is not a SOAP 1.1 Envelope, a missing or
    empty Body or one with more than the operation element in it, and :class:`MustUnderstand`
    for a header entry marked mustUnderstand other than LogicalAddress.
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
        envelope = parse_untrusted(body, max_bytes, remove_blank_text=True, limits=request_limits())
    except XmlTooComplex as exc:
        raise MalformedRequest(f"the request is too complex: {exc}") from None
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
    _check_body(soap_body, body_element)

    logical_address: str | None = None
    if header is not None:
        _check_must_understand(header)
        address = _logical_address_element(header)
        if address is not None:
            logical_address = address.text or ""
            if _may_hold_markup(body, root_start.start() if root_start else None):
                logical_address = _address_as_written(body, max_bytes) or logical_address
    return SoapRequest(envelope, body_element, logical_address)


def _check_body(soap_body: etree._Element, body_element: etree._Element) -> None:
    # Document/literal with one operation: the Body holds its element and nothing else. Anything
    # beside it would be stored with the call but never validated.
    if body_element.getnext() is not None:
        raise MalformedRequest("the SOAP Body must hold one element, the operation; it holds more")
    if (soap_body.text or "").strip() or (body_element.tail or "").strip():
        raise MalformedRequest("the SOAP Body must hold only the operation element, no text")


def _check_must_understand(header: etree._Element) -> None:
    for entry in header.iterchildren(tag=etree.Element):
        if (entry.get(_MUST_UNDERSTAND) or "").strip() not in ("1", "true"):
            continue
        if entry.get(_ACTOR, _NEXT_ACTOR) not in ("", _NEXT_ACTOR):
            continue  # meant for another node on the way; not ours to understand
        if etree.QName(entry).localname != _UNDERSTOOD:
            raise MustUnderstand(
                "a SOAP header entry marked mustUnderstand is not understood by this producer"
            )


def _logical_address_element(header: etree._Element) -> etree._Element | None:
    # Like the platform: the first element with that local name, whatever its namespace.
    for el in header.iterdescendants(tag=etree.Element):
        if el.tag == _UNDERSTOOD or el.tag.endswith("}" + _UNDERSTOOD):
            return el
    return None


def _may_hold_markup(body: bytes, root_start: int | None) -> bool:
    """Whether a comment or processing instruction may stand inside the document's root.

    The parse drops both and joins the text around them: ``1<!---->4`` reads as ``14``. Only an
    ASCII-compatible body can be searched as bytes; any other may hold them anywhere.
    """
    if root_start is None:
        return True
    rest = body[root_start:]
    return b"<!--" in rest or b"<?" in rest


def _address_as_written(body: bytes, max_bytes: int) -> str | None:
    """The first LogicalAddress's content as written, when a comment or PI stands in it.

    The platform routes on the text as it stands; the hub does not guess what a comment inside
    an address would be read as, and takes the markup as part of it: no län code, so no route.
    None when there is no comment or PI in it (or no address).
    """
    try:
        envelope = parse_untrusted(body, max_bytes, keep_markup=True)
    except UnsafeXml:
        return None
    header = next(envelope.iterchildren(_HEADER), None)
    address = None if header is None else _logical_address_element(header)
    if address is None or not any(
        isinstance(child, (etree._Comment, etree._ProcessingInstruction)) for child in address
    ):
        return None
    return (address.text or "") + "".join(
        etree.tostring(child, encoding="unicode", with_tail=True) for child in address
    )


# --- payload → model -------------------------------------------------------------------------


class _Names(dict[str, str]):
    """Qualified names in the core namespace, composed once: ``_N["root"]``."""

    def __missing__(self, name: str) -> str:
        qualified = self[name] = f"{{{CORE_NS}}}{name}"
        return qualified


_N: Final = _Names()
_Children = dict[str, etree._Element]


def _children(el: etree._Element) -> _Children:
    # One pass over an element's children into a map, then dictionary look-ups: the model reads
    # some forty children per message, and a search per child (find() or iterchildren(tag))
    # made building the model cost several times the XSD validation. The first of equal tags
    # wins, as with find(); repeated elements are read with iterchildren. A required child is
    # read as kids[name]: a KeyError, turned into a ModelError by information_from_element.
    kids: _Children = {}
    for child in el:
        kids.setdefault(child.tag, child)
    return kids


def _opt_text(kids: _Children, name: str) -> str | None:
    el = kids.get(_N[name])
    return None if el is None else (el.text or "")


def _ii(el: etree._Element) -> II:
    kids = _children(el)
    return II(root=kids[_N["root"]].text or "", extension=_opt_text(kids, "extension"))


def _cv(el: etree._Element) -> CV:
    kids = _children(el)
    return CV(
        code=kids[_N["code"]].text or "",
        code_system=kids[_N["codeSystem"]].text or "",
        code_system_name=_opt_text(kids, "codeSystemName"),
        code_system_version=_opt_text(kids, "codeSystemVersion"),
        display_name=_opt_text(kids, "displayName"),
        original_text=_opt_text(kids, "originalText"),
    )


def _organisation(el: etree._Element) -> Organisation:
    kids = _children(el)
    return Organisation(id=_ii(kids[_N["id"]]), name=kids[_N["name"]].text or "")


def _region(el: etree._Element) -> Region:
    kids = _children(el)
    giver, unit = kids.get(_N["careGiver"]), kids.get(_N["careUnit"])
    return Region(
        region=_organisation(kids[_N["region"]]),
        care_giver=None if giver is None else _organisation(giver),
        care_unit=None if unit is None else _organisation(unit),
    )


def _exclusion(el: etree._Element) -> Exclusion:
    kids = _children(el)
    return Exclusion(
        reason=_cv(kids[_N["reason"]]),
        registered_at=kids[_N["registeredAt"]].text or "",
        original_region=_region(kids[_N["originalRegion"]]),
    )


def _follow_up(el: etree._Element) -> FollowUpGroup:
    kids = _children(el)
    return FollowUpGroup(
        type=_cv(kids[_N["type"]]),
        inclusion_date=kids[_N["inclusionDate"]].text or "",
        original_region=_region(kids[_N["originalRegion"]]),
    )


def _specimen(el: etree._Element) -> Specimen:
    kids = _children(el)
    value = _N["value"]
    return Specimen(
        specimen_date=kids[_N["specimenDate"]].text or "",
        original_region=_region(kids[_N["originalRegion"]]),
        hpv_status_list=tuple(
            HPVStatus(value=_cv(_children(h)[value])) for h in el.iterchildren(_N["HPVstatusList"])
        ),
    )


def _planned(el: etree._Element) -> PlannedInvitation:
    kids = _children(el)
    return PlannedInvitation(date=kids[_N["date"]].text or "", reason=_opt_text(kids, "reason"))


def information_from_element(el: etree._Element) -> CervixScreeningInformation:
    """Build the model from a ``cervixScreeningInformation`` element.

    Expects a schema-valid element; raises :class:`ModelError` (data-free) if a required child is
    missing.
    """
    kids = _children(el)
    exclusion, planned = kids.get(_N["exclusion"]), kids.get(_N["plannedInvitation"])
    specimen = kids.get(_N["specimen"])
    try:
        subject = kids[_N["subjectOfCare"]]
        return CervixScreeningInformation(
            subject_of_care=Person(person_id=_ii(_children(subject)[_N["personId"]])),
            sending_region=_region(kids[_N["sendingRegion"]]),
            exclusion=None if exclusion is None else _exclusion(exclusion),
            follow_up_groups=tuple(_follow_up(f) for f in el.iterchildren(_N["followUpGroups"])),
            planned_invitation=None if planned is None else _planned(planned),
            specimen=None if specimen is None else _specimen(specimen),
        )
    except KeyError as missing:
        name = etree.QName(missing.args[0]).localname
        raise ModelError(f"{_local(el)}: a required {name} is missing") from None
