"""The contract files: the XSDs compile, accept extensions, and the WSDL reads in zeep."""

import random
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
from lxml import etree

from hub.contract import personnummer
from hub.contract.names import ITR_NS, SOAP_ACTION
from hub.contract.parse import parse_request
from hub.contract.wsdl import load_schema, schema, wsdl_dir

DATA = Path(__file__).parent / "data" / "contract"
WSDL = (
    wsdl_dir()
    / "interactions/ProcessCervixScreeningInformationInteraction"
    / "ProcessCervixScreeningInformationInteraction_1.0_RIVTABP21.wsdl"
)
PNR = personnummer.generate(random.Random(5))


class _NoNetwork(requests.adapters.BaseAdapter):
    def send(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the WSDL must load without network access")

    def close(self) -> None:
        pass


def _zeep_client() -> zeep.Client:
    session = requests.Session()
    session.mount("http://", _NoNetwork())
    session.mount("https://", _NoNetwork())
    return zeep.Client(str(WSDL), transport=zeep.Transport(session=session))


def _body(name: str) -> etree._Element:
    data = (DATA / name).read_bytes().replace(b"{PNR}", PNR.encode())
    return parse_request(data).body_element


def test_the_schemas_compile_in_lxml() -> None:
    assert isinstance(load_schema(), etree.XMLSchema)


def test_schema_is_cached_per_thread() -> None:
    # One compiled schema per thread (its error log is per object), reused within the thread.
    # The objects themselves are kept: a finished thread's schema could otherwise be freed and
    # the next one built at the same address.
    seen: dict[str, tuple[Any, Any]] = {}

    def look(name: str) -> None:
        seen[name] = (schema(), schema())

    threads = [threading.Thread(target=look, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a1, a2), (b1, b2) = seen["a"], seen["b"]
    assert a1 is a2 and b1 is b2 and a1 is not b1


def test_xsd_accepts_unknown_other_namespace_elements_at_the_end() -> None:
    assert schema().validate(_body("request_extensions.xml")), schema().error_log


def test_xsd_refuses_an_unknown_element_in_the_target_namespace() -> None:
    body = _body("request_full.xml")
    info = body[0]
    etree.SubElement(info, "{urn:riv:clinicalprocess:logistics:cervixscreening:1}surprise")
    assert not schema().validate(body)


def test_xsd_refuses_wrong_namespace_and_wrong_order() -> None:
    assert not schema().validate(_body("request_wrong_namespace.xml"))
    assert not schema().validate(_body("request_wrong_order.xml"))


def test_the_header_schema_knows_logical_address() -> None:
    el = etree.Element(f"{{{ITR_NS}}}LogicalAddress")
    el.text = "14"
    assert schema().validate(el)


def test_imports_outside_the_wsdl_folder_are_refused(tmp_path: Path) -> None:
    # A copy of the contract whose domain schema tries to import a file next to the folder.
    folder = tmp_path / "wsdl"
    for src in wsdl_dir().rglob("*.xsd"):
        dest = folder / src.relative_to(wsdl_dir())
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src.read_bytes())
    (tmp_path / "outside.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x">'
        '<xs:element name="x"/></xs:schema>'
    )
    core = folder / "core_components/clinicalprocess_logistics_cervixscreening_1.0.xsd"
    core.write_text(
        core.read_text().replace(
            'version="1.0">',
            'version="1.0"><xs:import namespace="urn:x" schemaLocation="../../outside.xsd"/>',
            1,
        )
    )
    with pytest.raises(etree.XMLSchemaParseError):
        load_schema(folder)


def test_zeep_reads_the_wsdl_with_operation_and_header() -> None:
    client = _zeep_client()
    service = client.wsdl.services["ProcessCervixScreeningInformationResponderService"]
    port = service.ports["ProcessCervixScreeningInformationResponderPort"]
    operation = port.binding._operations["ProcessCervixScreeningInformation"]
    assert operation.soapaction == SOAP_ACTION
    header = operation.input.header.signature()
    assert f"LogicalAddress: {{{ITR_NS}}}LogicalAddressType" in header
    assert port.binding_options["address"].startswith("http://localhost:8080/")


def test_a_zeep_built_request_passes_our_parser_and_schema() -> None:
    client = _zeep_client()
    region = {"region": {"id": {"root": "1.2.752.129.2.1.4.1", "extension": "SE2321000016"},
                         "name": "Region Stockholm"}}  # fmt: skip
    envelope = client.create_message(
        client.service,
        "ProcessCervixScreeningInformation",
        cervixScreeningInformation={
            "subjectOfCare": {"personId": {"root": "1.2.752.129.2.1.3.1", "extension": PNR}},
            "sendingRegion": region,
        },
        _soapheaders={"LogicalAddress": "14"},
    )
    req = parse_request(etree.tostring(envelope))
    assert req.logical_address == "14"
    assert schema().validate(req.body_element), schema().error_log
