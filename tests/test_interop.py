"""Interop: a real SOAP client (zeep) built from our WSDL calls the hub over HTTP on loopback."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import requests
import zeep
from lxml import etree
from sqlalchemy import func, select
from zeep.transports import Transport

from hub.context import Hub
from hub.contract.names import (
    ENDPOINT_PATH,
    ITR_NS,
    RESPONDER_NS,
    SOAP_ACTION,
)
from hub.contract.samples import sample_information
from hub.contract.serialise import information_to_element
from hub.contract.wsdl import WSDL_FILE, wsdl_dir
from hub.db.region_tables import messages
from hub.producer.spyne import build_spyne_app
from hub.tenancy.registry import MemberRegion

WSDL = "http://schemas.xmlsoap.org/wsdl/"
XS = "http://www.w3.org/2001/XMLSchema"


def _call(client_wsdl: str, address: str, lan: str, pnr: str) -> Any:
    client = zeep.Client(client_wsdl, transport=Transport(session=requests.Session(), timeout=10))
    service = client.create_service(
        "{urn:riv:clinicalprocess:logistics:cervixscreening:ProcessCervixScreeningInformation:1:"
        "rivtabp21}ProcessCervixScreeningInformationResponderBinding",
        address,
    )
    info = sample_information("sample", pnr=pnr, sending_lan="12", today=date.today())
    # zeep builds its own object from our XML, so the request is zeep's serialisation, not ours.
    request_type = client.get_element(f"{{{RESPONDER_NS}}}ProcessCervixScreeningInformation")
    wrapper = etree.Element(f"{{{RESPONDER_NS}}}ProcessCervixScreeningInformation")
    wrapper.append(information_to_element(info))
    parsed = request_type.parse(wrapper, client.wsdl.types)
    # The WSDL binds LogicalAddress as a soap:header of the input, so zeep takes it by name.
    return service.ProcessCervixScreeningInformation(
        cervixScreeningInformation=parsed.cervixScreeningInformation,
        _soapheaders={"LogicalAddress": lan},
    )


def test_zeep_from_our_wsdl_file_gets_ok_and_the_message_is_stored(
    hub: Hub,
    live_server: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    wsdl_file = str(wsdl_dir() / WSDL_FILE)
    answer = _call(wsdl_file, live_server.url + ENDPOINT_PATH, "14", make_pnr())
    assert answer.resultCode == "OK"
    with hub.db.region("14").connect() as connection:
        assert connection.execute(select(func.count()).select_from(messages)).scalar_one() == 1


def test_zeep_from_the_served_wsdl_url_gets_error_for_an_unserved_lan(
    live_server: Any, regions_ab: tuple[MemberRegion, MemberRegion], make_pnr: Callable[[], str]
) -> None:
    url = live_server.url + ENDPOINT_PATH
    answer = _call(url + "?wsdl", url, "25", make_pnr())
    assert answer.resultCode == "ERROR"
    assert "25" in answer.resultText


def _elements(doc: etree._Element) -> set[tuple[str, str]]:
    """(target namespace, name) of every global element and element inside the request/response."""
    found = set()
    for schema in doc.iter(f"{{{XS}}}schema"):
        tns = schema.get("targetNamespace", "")
        for element in schema.iter(f"{{{XS}}}element"):
            if element.get("name"):
                found.add((tns, element.get("name")))
    return found


def _load_official() -> set[tuple[str, str]]:
    folder = wsdl_dir() / "interactions" / "ProcessCervixScreeningInformationInteraction"
    found: set[tuple[str, str]] = set()
    for path in (
        folder / "ProcessCervixScreeningInformationResponder_1.0.xsd",
        wsdl_dir() / "core_components" / "itintegration_registry_1.0.xsd",
    ):
        found |= _elements(etree.parse(str(path)).getroot())
    return found


def test_spyne_generated_wsdl_matches_the_official_names_and_namespaces() -> None:
    app = build_spyne_app()
    app.doc.wsdl11.build_interface_document("http://localhost/x")
    generated = etree.fromstring(app.doc.wsdl11.get_interface_document())
    official_wsdl = etree.parse(str(wsdl_dir() / WSDL_FILE)).getroot()
    wanted = {
        (RESPONDER_NS, "ProcessCervixScreeningInformation"),
        (RESPONDER_NS, "cervixScreeningInformation"),
        (RESPONDER_NS, "ProcessCervixScreeningInformationResponse"),
        (RESPONDER_NS, "resultCode"),
        (RESPONDER_NS, "resultText"),
        (ITR_NS, "LogicalAddress"),
    }
    official = _load_official()
    assert wanted <= official
    spyne_elements = _elements(generated)
    # The header element lives in the itr namespace; Spyne imports it rather than declaring it.
    spyne_elements |= {
        (ITR_NS, part.get("element", "").split(":")[-1])
        for part in generated.iter(f"{{{WSDL}}}part")
        if part.get("element", "").split(":")[-1] == "LogicalAddress"
    }
    assert wanted <= spyne_elements, wanted - spyne_elements
    # Operation name, service name and binding style agree.
    for doc in (generated, official_wsdl):
        operations = {op.get("name") for op in doc.iter(f"{{{WSDL}}}operation")}
        assert operations == {"ProcessCervixScreeningInformation"}
        assert {s.get("name") for s in doc.iter(f"{{{WSDL}}}service")} == {
            "ProcessCervixScreeningInformationResponderService"
        }
    actions = {
        op.get("soapAction")
        for op in official_wsdl.iter("{http://schemas.xmlsoap.org/wsdl/soap/}operation")
    }
    assert actions == {SOAP_ACTION}
