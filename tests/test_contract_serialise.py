"""Writing payloads and envelopes: schema-valid, canonical, and a lossless round trip."""

import datetime
import random
from pathlib import Path

import pytest
from lxml import etree

from hub.contract import personnummer
from hub.contract.names import CORE_NS, RESPONDER_NS, SOAP11_ENV_NS
from hub.contract.parse import information_from_element, parse_request
from hub.contract.regions import REGIONS
from hub.contract.samples import sample_information
from hub.contract.serialise import (
    build_fault_envelope,
    build_request_envelope,
    build_response_envelope,
    information_to_element,
)
from hub.contract.wsdl import schema

DATA = Path(__file__).parent / "data" / "contract"
TODAY = datetime.date(2024, 6, 1)
SCENARIOS = ["move", "sample", "treatment", "no_information"]
RNG = random.Random(99)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_round_trip_through_the_envelope(scenario: str) -> None:
    info = sample_information(
        scenario,  # type: ignore[arg-type]
        pnr=personnummer.generate(RNG),
        sending_lan="01",
        original_lan="25",
        today=TODAY,
    )
    data = build_request_envelope("14", info)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    req = parse_request(data)
    assert req.logical_address == "14"
    assert schema().validate(req.body_element), schema().error_log
    assert information_from_element(req.body_element[0]) == info
    assert build_request_envelope("14", info) == data  # same model, same bytes


def test_round_trip_of_every_field_from_the_full_fixture() -> None:
    pnr = personnummer.generate(RNG)
    raw = (DATA / "request_full.xml").read_bytes().replace(b"{PNR}", pnr.encode())
    info = information_from_element(parse_request(raw).body_element[0])
    element = information_to_element(info)
    assert information_from_element(element) == info
    assert element.tag == f"{{{RESPONDER_NS}}}cervixScreeningInformation"
    assert all(etree.QName(child).namespace == CORE_NS for child in element)
    assert element.nsmap == {"tjsr": RESPONDER_NS, "core": CORE_NS}


def test_request_envelope_accepts_an_element() -> None:
    pnr = personnummer.generate(RNG)
    info = sample_information("sample", pnr=pnr, sending_lan="12", today=TODAY)
    element = information_to_element(info)
    from_payload = build_request_envelope("14", element)
    operation = parse_request(from_payload).body_element
    from_operation = build_request_envelope("14", operation)
    assert from_payload == from_operation == build_request_envelope("14", info)
    assert element.getparent() is None  # copied, not moved


@pytest.mark.parametrize(
    ("code", "text"), [("OK", None), ("INFO", "i"), ("ERROR", "x: y (personnummer rule)")]
)
def test_response_envelope_is_schema_valid(code: str, text: str | None) -> None:
    data = build_response_envelope(code, text)  # type: ignore[arg-type]
    req = parse_request(data)
    response = req.body_element
    assert schema().validate(response), schema().error_log
    assert response.findtext(f"{{{RESPONDER_NS}}}resultCode") == code
    assert response.findtext(f"{{{RESPONDER_NS}}}resultText") == text


def test_fault_envelope() -> None:
    data = build_fault_envelope("soap:Server", "Internal error", detail="try later")
    fault = parse_request(data).body_element
    assert fault.tag == f"{{{SOAP11_ENV_NS}}}Fault"
    assert fault.findtext("faultcode") == "soap:Client".replace("Client", "Server")
    assert fault.findtext("faultstring") == "Internal error"
    assert fault.findtext("detail/detailString") == "try later"
    # The prefix in faultcode must resolve to the SOAP 1.1 namespace.
    assert fault.nsmap["soap"] == SOAP11_ENV_NS


def test_samples_use_the_regions_hsa_ids() -> None:
    pnr = personnummer.generate(RNG)
    info = sample_information(
        "treatment", pnr=pnr, sending_lan="14", original_lan="12", today=TODAY
    )
    assert info.sending_region.region.id.extension == REGIONS["14"].hsa_root
    assert info.exclusion is not None
    unit = info.exclusion.original_region.care_unit
    assert unit is not None and unit.id.extension is not None
    assert unit.id.extension.startswith(REGIONS["12"].hsa_root + "-")
    assert info.kind == "treatment"


def test_regions_table_has_all_21_regions() -> None:
    assert len(REGIONS) == 21
    assert all(len(code) == 2 and info.hsa_root.startswith("SE") for code, info in REGIONS.items())
