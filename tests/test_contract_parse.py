"""Reading untrusted SOAP requests: refuse what is unsafe or not SOAP 1.1, with data-free text."""

import random
import time
from pathlib import Path

import orjson
import pytest
from lxml import etree

from hub.contract import personnummer
from hub.contract.canonical import canonical_bytes
from hub.contract.names import CORE_NS, MAX_PAYLOAD_BYTES, PAYLOAD_TAG, RESPONDER_NS
from hub.contract.parse import (
    MalformedRequest,
    ModelError,
    MustUnderstand,
    information_from_element,
    parse_request,
)
from hub.contract.serialise import build_request_envelope

DATA = Path(__file__).parent / "data" / "contract"
PNR = personnummer.generate(random.Random(11))


def _fixture(name: str) -> bytes:
    return (DATA / name).read_bytes().replace(b"{PNR}", PNR.encode())


def _envelope(header: str = "", body: str = "<x/>") -> bytes:
    return (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
        f"{header}<soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def test_parse_request_finds_header_and_body() -> None:
    req = parse_request(_fixture("request_full.xml"))
    assert req.logical_address == "14"
    assert req.body_element.tag == f"{{{RESPONDER_NS}}}ProcessCervixScreeningInformation"
    assert req.envelope.getroottree().getroot() is req.envelope


def test_logical_address_is_the_first_one_untrimmed_in_any_namespace() -> None:
    header = (
        "<soap:Header><a:LogicalAddress xmlns:a='urn:other'> 01</a:LogicalAddress>"
        "<LogicalAddress xmlns='urn:riv:itintegration:registry:1'>14</LogicalAddress></soap:Header>"
    )
    assert parse_request(_envelope(header)).logical_address == " 01"


def test_logical_address_absent_or_empty() -> None:
    assert parse_request(_envelope()).logical_address is None
    empty = "<soap:Header><LogicalAddress xmlns='urn:riv:itintegration:registry:1'/></soap:Header>"
    assert parse_request(_envelope(empty)).logical_address == ""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not xml at all", "well-formed"),
        (b"<a><b></a>", "well-formed"),
        (b"", "well-formed"),
        (b"<Envelope/>", "SOAP 1.1 Envelope"),
        (
            b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"/>',
            "no Body",
        ),
        (_envelope(body=""), "Body is empty"),
        (_envelope(body="  text only  "), "Body is empty"),
    ],
)
def test_parse_request_refuses_non_soap(body: bytes, expected: str) -> None:
    with pytest.raises(MalformedRequest, match=expected):
        parse_request(body)


def test_soap12_is_refused_by_name() -> None:
    with pytest.raises(MalformedRequest, match=r"SOAP 1\.2"):
        parse_request(_fixture("soap12.xml"))


@pytest.mark.parametrize("name", ["billion_laughs.xml", "external_entity.xml", "external_dtd.xml"])
def test_dtds_and_entities_are_refused_quickly(name: str) -> None:
    started = time.perf_counter()
    with pytest.raises(MalformedRequest, match="DOCTYPE") as info:
        parse_request(_fixture(name))
    assert time.perf_counter() - started < 1.0
    assert "passwd" not in str(info.value) and "lol" not in str(info.value)


def test_oversize_body_is_refused_before_parsing() -> None:
    body = _envelope(body="<x>" + "a" * (6 * 1024 * 1024) + "</x>")
    started = time.perf_counter()
    with pytest.raises(MalformedRequest, match=str(MAX_PAYLOAD_BYTES)):
        parse_request(body)
    assert time.perf_counter() - started < 0.5


def test_malformed_messages_carry_no_data() -> None:
    with pytest.raises(MalformedRequest) as info:
        parse_request(f"<a>{PNR}</b>".encode())
    assert PNR not in str(info.value)


def test_information_from_element_reads_every_field() -> None:
    req = parse_request(_fixture("request_full.xml"))
    info = information_from_element(req.body_element[0])
    assert info.subject_of_care.person_id.extension == PNR
    assert info.sending_region.region.id.extension == "SE2321000016"
    assert info.exclusion is not None and info.exclusion.reason.display_name == "Total hysterektomi"
    assert info.exclusion.original_region.care_unit is not None
    assert [g.type.code for g in info.follow_up_groups] == ["59461000052109"]
    assert info.planned_invitation is not None
    assert info.planned_invitation.reason == "Kontroll efter behandling"
    assert info.specimen is not None
    assert [s.value.code for s in info.specimen.hpv_status_list] == [
        "59291000052102",
        "59321000052109",
    ]
    assert not info.is_no_information()
    assert PNR not in repr(info)


@pytest.mark.parametrize("missing", ["subjectOfCare", "name", "code", "specimenDate"])
def test_a_required_child_missing_is_a_model_error_naming_it_without_data(missing: str) -> None:
    payload = parse_request(_fixture("request_full.xml")).body_element[0]
    victim = next(payload.iter(f"{{{CORE_NS}}}{missing}"))
    victim.getparent().remove(victim)
    with pytest.raises(ModelError) as error:
        information_from_element(payload)
    assert f"a required {missing} is missing" in str(error.value)
    assert PNR not in str(error.value)


def test_summary_has_no_identifiers() -> None:
    req = parse_request(_fixture("request_full.xml"))
    info = information_from_element(req.body_element[0])
    summary = info.summary()
    assert summary["kind"] == "move" and summary["hpv_results"] == 2
    assert all(PNR not in str(v) for v in summary.values())
    assert CORE_NS not in str(summary)


def test_the_canonical_form_is_blind_to_prefixes_and_attribute_order_not_to_content() -> None:
    def canonical(body: bytes) -> bytes:
        element = parse_request(body).body_element.find(PAYLOAD_TAG)
        assert element is not None
        return canonical_bytes(element)

    plain = _fixture("request_extensions.xml")
    # The same content as another sender might write it: other prefixes, the core namespace as
    # the default one, and attributes in another order.
    renamed = plain.replace(b"core:", b"c:").replace(b"xmlns:core=", b"xmlns:c=")
    defaulted = plain.replace(b"<core:", b"<").replace(b"</core:", b"</")
    defaulted = defaulted.replace(b"xmlns:core=", b"xmlns=")
    with_attributes = plain.replace(b"<ext:regionNote/>", b'<ext:regionNote a="1" b="2"/>')
    reordered = plain.replace(b"<ext:regionNote/>", b'<ext:regionNote b="2" a="1"/>')
    assert renamed != plain and defaulted != plain
    assert canonical(renamed) == canonical(defaulted) == canonical(plain)
    assert canonical(reordered) == canonical(with_attributes) != canonical(plain)
    # Content is not blind: another value, or an element moved into another parent.
    assert canonical(plain.replace(b"added in 1.1", b"added in 1.2", 1)) != canonical(plain)
    moved = plain.replace(b"<ext:regionNote/>", b"").replace(
        b"<ext:cvNote/>", b"<ext:cvNote/><ext:regionNote/>"
    )
    assert canonical(moved) != canonical(plain)
    # The hub's own serialiser writes a message with its own prefixes: the same content.
    full = _fixture("request_full.xml")
    request = parse_request(full)
    info = information_from_element(request.body_element[0])
    again = build_request_envelope(request.logical_address or "", info)
    assert again != full and canonical(again) == canonical(full)


@pytest.mark.parametrize("fixture", ["request_full.xml", "request_extensions.xml"])
def test_the_canonical_form_drops_indentation_only_however_the_tree_was_parsed(
    fixture: str,
) -> None:
    plain = _fixture(fixture)
    # The same message indented, and one with a leaf whose whitespace is its value.
    indented = etree.tostring(etree.fromstring(plain), pretty_print=True)
    tree = etree.fromstring(plain)
    next(tree.iter(f"{{{CORE_NS}}}name")).text = "  "
    leaf = etree.tostring(tree)

    def fast(body: bytes) -> bytes:
        element = parse_request(body).body_element.find(PAYLOAD_TAG)
        assert element is not None
        return canonical_bytes(element)

    for body in (plain, indented, leaf):
        slow = etree.fromstring(body).find(f".//{PAYLOAD_TAG}")  # keeps every text node
        assert slow is not None
        assert fast(body) == canonical_bytes(slow)
    assert fast(plain) == fast(indented)
    assert fast(leaf) != fast(plain) and b'"  "' in fast(leaf)  # a leaf's own value is kept


def test_the_canonical_form_reads_many_attributes_as_items_would_in_linear_time() -> None:
    # Many attributes, some namespaced, in a scrambled order: the same pairs as items() gives.
    names = [f"a{i}" for i in range(40)] + [
        "{urn:x}b",
        "{http://www.w3.org/XML/1998/namespace}lang",
    ]
    random.Random(3).shuffle(names)
    element = etree.Element("{urn:x}n", {name: f"v-{name}" for name in names})
    element.append(etree.Element("{urn:x}few", {"b": "2", "a": "1"}))
    nodes = orjson.loads(canonical_bytes(element))
    assert nodes[0][1] == [list(pair) for pair in sorted(element.items())]
    assert nodes[1][1] == [["a", "1"], ["b", "2"]]
    # An element with tens of thousands of attributes (lxml's items() costs their square: many
    # seconds here) takes a fraction of a second.
    crowded = etree.fromstring(
        ("<n " + " ".join(f'a{i}="x"' for i in range(40_000)) + "/>").encode()
    )
    started = time.process_time()
    canonical_bytes(crowded)
    assert time.process_time() - started < 1.0


def _with_extension(content: str) -> bytes:
    end = b"</urn:cervixScreeningInformation>"
    body = _fixture("request_full.xml")  # 68 elements, 4 namespace declarations, depth 9
    assert end in body
    return body.replace(end, content.encode() + end)


def _nested(levels: int) -> str:
    return '<x:e xmlns:x="urn:x">' + "<x:e>" * (levels - 1) + "</x:e>" * levels


def _attributes(count: int) -> str:
    return '<x:e xmlns:x="urn:x" ' + " ".join(f'a{i}="1"' for i in range(count)) + "/>"


def _declarations(count: int) -> str:
    return "<x:e " + " ".join(f'xmlns:p{i}="urn:p"' for i in range(count - 1)) + ' xmlns:x="u"/>'


def _named(chars: int) -> str:
    return f'<x:{"n" * chars} xmlns:x="urn:x"/>'


# (just within the limit, just over it, what the fault says). The extension slot is at depth 5.
_LIMITS = {
    "elements": (
        "<urn1:name/>" * (10_000 - 68),  # contract elements, if out of place
        "<urn1:name/>" * (10_000 - 67),
        "too many elements (the limit is 10000)",
    ),
    "depth": (_nested(28), _nested(29), "elements nested too deeply (the limit is 32)"),
    "attributes": (
        _attributes(32),
        _attributes(33),
        "too many attributes on one element (the limit is 32)",
    ),
    "attributes in all": (
        _attributes(32) * 312 + _attributes(16),
        _attributes(32) * 312 + _attributes(17),
        "too many attributes (the limit is 10000)",
    ),
    "declarations": (
        _declarations(32),
        _declarations(33),
        "too many namespace declarations on one element (the limit is 32)",
    ),
    "declarations in all": (
        _declarations(32) * 31 + _declarations(4),
        _declarations(32) * 31 + _declarations(5),
        "too many namespace declarations (the limit is 1000)",
    ),
    "name": (_named(256), _named(257), "an element name that is too long (the limit is 256)"),
    "prefix": (
        f'<{"p" * 256}:e xmlns:{"p" * 256}="urn:x"/>',
        f'<{"p" * 257}:e xmlns:{"p" * 257}="urn:x"/>',
        "a namespace prefix that is too long (the limit is 256)",
    ),
    "namespace": (
        f'<x:e xmlns:x="urn:{"u" * 508}"/>',
        f'<x:e xmlns:x="urn:{"u" * 509}"/>',
        "a namespace name that is too long (the limit is 512)",
    ),
    "unknown elements": (
        '<x:w xmlns:x="urn:x">' + "<x:e/>" * 999 + "</x:w>",
        '<x:w xmlns:x="urn:x">' + "<x:e/>" * 1000 + "</x:w>",
        "too many elements in extensions or not in the contract (the limit is 1000)",
    ),
    "elements inside extensions": (
        f'<x:w xmlns:x="urn:x" xmlns:c="{CORE_NS}">' + "<c:name/>" * 999 + "</x:w>",
        f'<x:w xmlns:x="urn:x" xmlns:c="{CORE_NS}">' + "<c:name/>" * 1000 + "</x:w>",
        "too many elements in extensions or not in the contract (the limit is 1000)",
    ),
}


@pytest.mark.parametrize("limit", sorted(_LIMITS))
def test_a_request_over_a_limit_of_its_shape_is_refused_with_a_fixed_text(limit: str) -> None:
    # Issue 17, defect 1: the 5 MB cap alone lets work grow with the square of the input.
    within, over, text = _LIMITS[limit]
    parse_request(_with_extension(within))
    with pytest.raises(MalformedRequest) as refused:
        parse_request(_with_extension(over))
    assert str(refused.value) == f"the request is too complex: the document has {text}"


def test_the_limits_are_checked_in_any_encoding() -> None:
    body = _with_extension(_attributes(33)).decode()
    utf16 = body.replace("UTF-8", "UTF-16", 1).encode("utf-16")
    assert b"xmlns" not in utf16  # nothing a scan of the raw bytes for ASCII would count
    with pytest.raises(MalformedRequest, match="attributes on one element"):
        parse_request(utf16)


_ADDRESS = "<soap:Header><itr:LogicalAddress xmlns:itr='urn:riv:itintegration:registry:1'>{}"
_ADDRESS += "</itr:LogicalAddress></soap:Header>"


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("14", "14"),
        ("1<!---->4", "1<!---->4"),  # the text as written: not the län code 14
        ("<!-- to VGR -->14", "<!-- to VGR -->14"),
        ("1<?route 4?>4", "1<?route 4?>4"),
        ("<![CDATA[14]]>", "14"),  # character data, as much as plain text is
        ("1&#52;", "14"),
    ],
)
def test_the_logical_address_is_read_as_written(written: str, read: str) -> None:
    # Issue 17: the parse drops comments and joins the text around them, so "1<!---->4" routed
    # to 14. Decision: the address is its text as written; a comment or processing instruction
    # in it stays part of it, so it is no län code and routes nowhere.
    assert parse_request(_envelope(_ADDRESS.format(written))).logical_address == read


def test_the_logical_address_is_read_as_written_in_any_encoding() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-16"?>' + _envelope(_ADDRESS.format("1<!---->4")).decode()
    )
    assert parse_request(body.encode("utf-16")).logical_address == "1<!---->4"


_NEXT = "http://schemas.xmlsoap.org/soap/actor/next"


@pytest.mark.parametrize(
    ("entry", "understood"),
    [
        ("<x:Security xmlns:x='urn:x' soap:mustUnderstand='1'/>", False),
        ("<x:Security xmlns:x='urn:x' soap:mustUnderstand='true'/>", False),
        ("<x:Security xmlns:x='urn:x' soap:mustUnderstand='0'/>", True),
        ("<x:Security xmlns:x='urn:x'/>", True),
        # Meant for another node on the way (SOAP 1.1 actor): not ours to understand.
        ("<x:Security xmlns:x='urn:x' soap:mustUnderstand='1' soap:actor='urn:other'/>", True),
        (f"<x:S xmlns:x='urn:x' soap:mustUnderstand='1' soap:actor='{_NEXT}'/>", False),
        # Only header entries count, not elements inside one.
        ("<x:S xmlns:x='urn:x'><x:inner soap:mustUnderstand='1'/></x:S>", True),
        (
            "<itr:LogicalAddress xmlns:itr='urn:riv:itintegration:registry:1' "
            "soap:mustUnderstand='1'>14</itr:LogicalAddress>",
            True,
        ),
    ],
)
def test_a_header_entry_that_must_be_understood_is_understood_or_refused(
    entry: str, understood: bool
) -> None:
    body = _envelope(f"<soap:Header>{entry}</soap:Header>")
    if understood:
        parse_request(body)
        return
    with pytest.raises(MustUnderstand) as refused:
        parse_request(body)
    assert str(refused.value) == (
        "a SOAP header entry marked mustUnderstand is not understood by this producer"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("<x/><y/>", "holds more"),
        ("<x/>\n  <y/>", "holds more"),
        ("<x/>text", "no text"),
        ("text<x/>", "no text"),
        ("\n  <x/>\n  ", None),
    ],
)
def test_the_body_holds_the_operation_element_only(content: str, problem: str | None) -> None:
    # Issue 17: a second element (or text) in the Body was stored with the call, never checked.
    body = _envelope(body=content)
    if problem is None:
        parse_request(body)
        return
    with pytest.raises(MalformedRequest, match=problem):
        parse_request(body)
