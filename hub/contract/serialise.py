"""Write the payload and SOAP 1.1 envelopes (docs/contract.md).

Elements are written in the schema's sequence order, which is normative, with fixed prefixes so
that the same model always gives the same bytes (useful for hashes and idempotency keys).
"""

import copy
from typing import Final, Literal

from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from hub.contract.model import (
    CV,
    II,
    CervixScreeningInformation,
    Organisation,
    Region,
)
from hub.contract.names import (
    CORE_NS,
    ITR_NS,
    OPERATION_TAG,
    PAYLOAD_TAG,
    RESPONDER_NS,
    RESPONSE_TAG,
    SOAP11_ENV_NS,
)

NSMAP: Final = {"soap": SOAP11_ENV_NS, "itr": ITR_NS, "tjsr": RESPONDER_NS, "core": CORE_NS}
_PAYLOAD_NSMAP: Final = {"tjsr": RESPONDER_NS, "core": CORE_NS}

ResultCode = Literal["OK", "INFO", "ERROR"]


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{CORE_NS}}}{name}")
    if text is not None:
        el.text = text
    return el


def _opt_sub(parent: etree._Element, name: str, text: str | None) -> None:
    if text is not None:
        _sub(parent, name, text)


def _ii(parent: etree._Element, name: str, ii: II) -> None:
    el = _sub(parent, name)
    _sub(el, "root", ii.root)
    _opt_sub(el, "extension", ii.extension)


def _cv(parent: etree._Element, name: str, cv: CV) -> None:
    el = _sub(parent, name)
    _sub(el, "code", cv.code)
    _sub(el, "codeSystem", cv.code_system)
    _opt_sub(el, "codeSystemName", cv.code_system_name)
    _opt_sub(el, "codeSystemVersion", cv.code_system_version)
    _opt_sub(el, "displayName", cv.display_name)
    _opt_sub(el, "originalText", cv.original_text)


def _organisation(parent: etree._Element, name: str, org: Organisation | None) -> None:
    if org is None:
        return
    el = _sub(parent, name)
    _ii(el, "id", org.id)
    _sub(el, "name", org.name)


def _region(parent: etree._Element, name: str, region: Region) -> None:
    el = _sub(parent, name)
    _organisation(el, "region", region.region)
    _organisation(el, "careGiver", region.care_giver)
    _organisation(el, "careUnit", region.care_unit)


def information_to_element(info: CervixScreeningInformation) -> etree._Element:
    """The ``tjsr:cervixScreeningInformation`` element for ``info``, children in ``core``."""
    root = etree.Element(PAYLOAD_TAG, nsmap=_PAYLOAD_NSMAP)
    subject = _sub(root, "subjectOfCare")
    _ii(subject, "personId", info.subject_of_care.person_id)
    _region(root, "sendingRegion", info.sending_region)
    if info.exclusion is not None:
        ex = _sub(root, "exclusion")
        _cv(ex, "reason", info.exclusion.reason)
        _sub(ex, "registeredAt", info.exclusion.registered_at)
        _region(ex, "originalRegion", info.exclusion.original_region)
    for group in info.follow_up_groups:
        fu = _sub(root, "followUpGroups")
        _cv(fu, "type", group.type)
        _sub(fu, "inclusionDate", group.inclusion_date)
        _region(fu, "originalRegion", group.original_region)
    if info.planned_invitation is not None:
        pi = _sub(root, "plannedInvitation")
        _sub(pi, "date", info.planned_invitation.date)
        _opt_sub(pi, "reason", info.planned_invitation.reason)
    if info.specimen is not None:
        sp = _sub(root, "specimen")
        _sub(sp, "specimenDate", info.specimen.specimen_date)
        _region(sp, "originalRegion", info.specimen.original_region)
        for status in info.specimen.hpv_status_list:
            _cv(_sub(sp, "HPVstatusList"), "value", status.value)
    return root


def _envelope() -> tuple[etree._Element, etree._Element, etree._Element]:
    env = etree.Element(f"{{{SOAP11_ENV_NS}}}Envelope", nsmap=NSMAP)
    header = etree.SubElement(env, f"{{{SOAP11_ENV_NS}}}Header")
    body = etree.SubElement(env, f"{{{SOAP11_ENV_NS}}}Body")
    return env, header, body


def _bytes(env: etree._Element) -> bytes:
    # Drop namespace declarations nobody uses (e.g. core in a response) for tidy, stable output.
    etree.cleanup_namespaces(env, top_nsmap=NSMAP, keep_ns_prefixes=["soap"])
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def build_request_envelope(
    logical_address: str, info_or_element: CervixScreeningInformation | etree._Element
) -> bytes:
    """A complete SOAP 1.1 request: ``itr:LogicalAddress`` header and the operation element.

    ``info_or_element`` is a model, a ``cervixScreeningInformation`` element, or a whole
    ``ProcessCervixScreeningInformation`` element (copied, never moved out of its tree).
    """
    env, header, body = _envelope()
    etree.SubElement(header, f"{{{ITR_NS}}}LogicalAddress").text = logical_address
    if isinstance(info_or_element, CervixScreeningInformation):
        payload = information_to_element(info_or_element)
    else:
        payload = copy.deepcopy(info_or_element)
    if payload.tag == OPERATION_TAG:
        body.append(payload)
    else:
        etree.SubElement(body, OPERATION_TAG).append(payload)
    return _bytes(env)


def build_response_envelope(result_code: ResultCode, result_text: str | None) -> bytes:
    """A complete SOAP 1.1 response carrying ``resultCode`` and, if given, ``resultText``."""
    env, header, body = _envelope()
    env.remove(header)
    resp = etree.SubElement(body, RESPONSE_TAG)
    etree.SubElement(resp, f"{{{RESPONDER_NS}}}resultCode").text = result_code
    if result_text is not None:
        etree.SubElement(resp, f"{{{RESPONDER_NS}}}resultText").text = result_text
    return _bytes(env)


def build_fault_envelope(
    faultcode: Literal["soap:Client", "soap:Server", "soap:MustUnderstand"],
    faultstring: str,
    *,
    detail: str | None = None,
) -> bytes:
    """A SOAP 1.1 Fault. ``detail`` becomes ``detail/detailString``, as the platform writes it.

    The caller keeps personal data and stack traces out of ``faultstring`` and ``detail``.
    """
    env, header, body = _envelope()
    env.remove(header)
    fault = etree.SubElement(body, f"{{{SOAP11_ENV_NS}}}Fault")
    # faultcode/faultstring/detail are unqualified in SOAP 1.1.
    etree.SubElement(fault, "faultcode").text = faultcode
    etree.SubElement(fault, "faultstring").text = faultstring
    if detail is not None:
        etree.SubElement(etree.SubElement(fault, "detail"), "detailString").text = detail
    return _bytes(env)
