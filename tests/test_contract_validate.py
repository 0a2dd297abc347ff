"""Validation: XSD first, then every contract rule, with data-free resultText."""

import dataclasses
import datetime
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from hub.clock import swedish_today
from hub.contract import personnummer
from hub.contract.codes import DEFAULT_CODE_LISTS, CodeLists
from hub.contract.hsaid import is_hsa_id
from hub.contract.model import (
    CV,
    II,
    CervixScreeningInformation,
    FollowUpGroup,
    HPVStatus,
    Organisation,
    Person,
    PlannedInvitation,
    Region,
)
from hub.contract.names import SNOMED_CT
from hub.contract.parse import parse_request
from hub.contract.regions import is_lan_code
from hub.contract.samples import sample_information, unit_region_of
from hub.contract.serialise import build_request_envelope
from hub.contract.validate import (
    MAX_SCHEMA_PROBLEMS,
    SCHEMA_MESSAGES,
    Verdict,
    validate_request,
)
from hub.contract.wsdl import declared_element_names
from tests.hostile import schema_probes

DATA = Path(__file__).parent / "data" / "contract"
TODAY = datetime.date(2024, 6, 1)
PNR = personnummer.generate(random.Random(42), born=datetime.date(1980, 5, 17))
Change = Callable[[CervixScreeningInformation], CervixScreeningInformation]


def _sample(scenario: str = "move") -> CervixScreeningInformation:
    return sample_information(
        scenario,  # type: ignore[arg-type]
        pnr=PNR,
        sending_lan="14",
        original_lan="12",
        today=TODAY,
    )


def _check(
    info: CervixScreeningInformation,
    address: str | None = "14",
    *,
    codes: CodeLists = DEFAULT_CODE_LISTS,
) -> Verdict:
    req = parse_request(build_request_envelope(address or "", info))
    verdict = validate_request(
        req.body_element, None if address is None else address, today=TODAY, codes=codes
    )
    _assert_no_personal_data(verdict)
    return verdict


def _check_xml(name: str, address: str | None = "14") -> Verdict:
    req = parse_request((DATA / name).read_bytes().replace(b"{PNR}", PNR.encode()))
    verdict = validate_request(req.body_element, address, today=TODAY, codes=DEFAULT_CODE_LISTS)
    _assert_no_personal_data(verdict)
    return verdict


def _assert_no_personal_data(verdict: Verdict) -> None:
    text = (verdict.result_text() or "") + " ".join(p.message for p in verdict.problems)
    assert PNR not in text and PNR[2:] not in text and PNR[8:] not in text
    assert (
        verdict.result_code == "OK" or verdict.result_text()
    )  # resultText is always there with INFO and ERROR


def _person(extension: str | None, root: str = "1.2.752.129.2.1.3.1") -> Change:
    return lambda i: dataclasses.replace(i, subject_of_care=Person(II(root, extension)))


def _sender(region: Region) -> Change:
    return lambda i: dataclasses.replace(i, sending_region=region)


def _org(extension: str | None, root: str = "1.2.752.129.2.1.4.1") -> Organisation:
    return Organisation(II(root, extension), "Någon")


def _hpv(*codes: str, system: str = SNOMED_CT) -> Change:
    def change(i: CervixScreeningInformation) -> CervixScreeningInformation:
        assert i.specimen is not None
        statuses = tuple(HPVStatus(CV(c, system)) for c in codes)
        return dataclasses.replace(
            i, specimen=dataclasses.replace(i.specimen, hpv_status_list=statuses)
        )

    return change


def _specimen_date(value: str) -> Change:
    def change(i: CervixScreeningInformation) -> CervixScreeningInformation:
        assert i.specimen is not None
        return dataclasses.replace(i, specimen=dataclasses.replace(i.specimen, specimen_date=value))

    return change


def _exclusion(reason: CV | None = None, registered_at: str | None = None) -> Change:
    def change(i: CervixScreeningInformation) -> CervixScreeningInformation:
        treatment = _sample("treatment")
        assert treatment.exclusion is not None
        ex = treatment.exclusion
        ex = dataclasses.replace(
            ex, reason=reason or ex.reason, registered_at=registered_at or ex.registered_at
        )
        return dataclasses.replace(i, exclusion=ex)

    return change


def _follow_up(code: str = "59461000052109", date: str = "20240501") -> Change:
    group = FollowUpGroup(CV(code, SNOMED_CT), date, unit_region_of("12"))
    return lambda i: dataclasses.replace(i, follow_up_groups=(group,))


def _planned(date: str) -> Change:
    return lambda i: dataclasses.replace(i, planned_invitation=PlannedInvitation(date))


# (change, rule, path fragment). Each one breaks exactly one rule of a valid message.
ERRORS: dict[str, tuple[Change, str, str]] = {
    "pnr root": (_person(PNR, root="1.2.752.129.2.1.3.3"), "personnummer rule", "personId/root"),
    "pnr missing": (_person(None), "personnummer rule", "personId/extension"),
    "pnr short": (_person(PNR[2:]), "personnummer rule", "personId/extension"),
    "pnr check digit": (
        _person(PNR[:11] + str((int(PNR[11]) + 1) % 10)),
        "personnummer rule",
        "personId/extension",
    ),
    "pnr date": (_person("198002309802"), "personnummer rule", "personId/extension"),
    "samordningsnummer": (_person("198005779802"), "personnummer rule", "personId/extension"),
    "hsa root": (
        _sender(Region(_org("SE2321000131", root="1.2.752.129.2.1.4.2"))),
        "HSA-id rule",
        "sendingRegion/region/id/root",
    ),
    "hsa missing": (
        _sender(Region(_org(None))),
        "HSA-id rule",
        "sendingRegion/region/id/extension",
    ),
    "hsa shape": (
        _sender(Region(_org("VGR-1"))),
        "HSA-id rule",
        "sendingRegion/region/id/extension",
    ),
    "hsa in original region": (
        lambda i: _specimen_region(i, Region(_org("SE23"))),
        "HSA-id rule",
        "specimen/originalRegion/region/id/extension",
    ),
    "sender care giver": (
        _sender(Region(_org("SE2321000131"), care_giver=_org("SE2321000131"))),
        "sending region rule",
        "sendingRegion/careGiver",
    ),
    "sender care unit": (
        _sender(Region(_org("SE2321000131"), care_unit=_org("SE2321000131-X1"))),
        "sending region rule",
        "sendingRegion/careUnit",
    ),
    "code system": (
        _hpv("59311000052101", system="2.16.840.1.113883.6.96"),
        "SNOMED CT code list rule",
        "HPVstatusList[1]/value/codeSystem",
    ),
    "hpv code": (_hpv("116140006"), "SNOMED CT code list rule", "HPVstatusList[1]/value/code"),
    "exclusion code": (
        _exclusion(reason=CV("59461000052109", SNOMED_CT)),
        "SNOMED CT code list rule",
        "exclusion/reason/code",
    ),
    "follow-up code": (
        _follow_up(code="116140006"),
        "SNOMED CT code list rule",
        "followUpGroups[1]/type/code",
    ),
    "impossible date": (_specimen_date("20240231"), "date rule", "specimen/specimenDate"),
    "future specimen": (_specimen_date("20240602"), "date rule", "specimen/specimenDate"),
    "future exclusion": (
        _exclusion(registered_at="20240901"),
        "date rule",
        "exclusion/registeredAt",
    ),
    "future follow-up": (
        _follow_up(date="20250101"),
        "date rule",
        "followUpGroups[1]/inclusionDate",
    ),
    "impossible planned date": (_planned("20250230"), "date rule", "plannedInvitation/date"),
    "hpv negative with positive": (
        _hpv("59311000052101", "59291000052102"),
        "HPV status rule",
        "specimen/HPVstatusList",
    ),
    "hpv duplicate": (
        _hpv("59291000052102", "59291000052102"),
        "HPV status rule",
        "specimen/HPVstatusList",
    ),
    "xsd date pattern": (_specimen_date("2024-06-01"), "schema", "specimen/specimenDate"),
}


def _specimen_region(i: CervixScreeningInformation, region: Region) -> CervixScreeningInformation:
    assert i.specimen is not None
    return dataclasses.replace(i, specimen=dataclasses.replace(i.specimen, original_region=region))


@pytest.mark.parametrize("scenario", ["move", "sample", "treatment", "no_information"])
def test_every_sample_scenario_is_ok(scenario: str) -> None:
    verdict = _check(_sample(scenario))
    assert verdict.result_code == "OK", verdict.result_text()
    assert verdict.result_text() is None
    assert verdict.information == _sample(scenario)


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_each_rule_breach_is_an_error_naming_path_and_rule(case: str) -> None:
    change, rule, path = ERRORS[case]
    verdict = _check(change(_sample("move")))
    assert verdict.result_code == "ERROR"
    text = verdict.result_text()
    assert text is not None and rule in text and path in text, text
    assert any(p.rule == rule and path in p.path for p in verdict.errors)


@pytest.mark.parametrize("address", [None, "", " 14", "14 ", "4", "99", "SE", "LOAD-MOCKS"])
def test_logical_address_must_be_a_lan_code(address: str | None) -> None:
    verdict = _check(_sample(), address)
    assert verdict.result_code == "ERROR"
    assert "Header/LogicalAddress" in (verdict.result_text() or "")
    assert "logical address rule" in (verdict.result_text() or "")


@pytest.mark.parametrize("address", ["01", "14", "25"])
def test_logical_address_of_any_region_passes_here(address: str) -> None:
    # Whether this hub serves the län is routing's business, not validation's.
    assert _check(_sample(), address).result_code == "OK"


def test_r1_no_information_is_valid_and_flagged() -> None:
    verdict = _check(_sample("no_information"))
    assert verdict.result_code == "OK"
    assert verdict.information is not None and verdict.information.is_no_information()
    assert verdict.information.summary()["kind"] == "no_information"


def test_hpv_list_may_be_absent_or_single_negative() -> None:
    assert _check(_hpv()(_sample("sample"))).result_code == "OK"
    assert _check(_hpv("59311000052101")(_sample("sample"))).result_code == "OK"
    assert _check(_hpv("59291000052102", "59321000052109")(_sample())).result_code == "OK"


def test_today_is_allowed_for_past_only_dates() -> None:
    assert _check(_specimen_date("20240601")(_sample("sample"))).result_code == "OK"


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda i: _cv_extra(i, code_system_name="SNOMED CT"), "value/codeSystemName"),
        (lambda i: _cv_extra(i, original_text="fritext"), "value/originalText"),
        (_planned("20240101"), "plannedInvitation/date"),
        (_specimen_date("19700101"), "specimen/specimenDate"),  # before birth
    ],
)
def test_soft_problems_are_info_with_text(change: Change, path: str) -> None:
    verdict = _check(change(_sample("move")))
    assert verdict.result_code == "INFO"
    text = verdict.result_text()
    assert text is not None and text.startswith("INFO: ") and path in text and "note" in text
    assert verdict.information is not None


def _cv_extra(i: CervixScreeningInformation, **extra: str) -> CervixScreeningInformation:
    assert i.specimen is not None
    status = HPVStatus(CV("59311000052101", SNOMED_CT, **extra))
    return dataclasses.replace(
        i, specimen=dataclasses.replace(i.specimen, hpv_status_list=(status,))
    )


def test_error_text_leaves_out_soft_problems() -> None:
    info = _planned("20240101")(_person(PNR[:11] + "x")(_sample()))
    verdict = _check(info)
    assert verdict.result_code == "ERROR"
    assert len(verdict.problems) == 2
    assert "plannedInvitation" not in (verdict.result_text() or "")


def test_code_lists_come_from_configuration() -> None:
    narrow = dataclasses.replace(DEFAULT_CODE_LISTS, hpv_positive=frozenset({"59321000052109"}))
    verdict = _check(_sample("sample"), codes=narrow)
    assert verdict.result_code == "ERROR"
    assert "HPVstatusList[1]/value/code" in (verdict.result_text() or "")


def test_full_fixture_is_ok() -> None:
    verdict = _check_xml("request_full.xml")
    assert verdict.result_code == "OK", verdict.result_text()


def test_extensions_are_accepted() -> None:
    verdict = _check_xml("request_extensions.xml")
    assert verdict.result_code == "OK", verdict.result_text()


def test_wrong_namespace_is_an_xsd_error_naming_the_element() -> None:
    verdict = _check_xml("request_wrong_namespace.xml")
    assert verdict.result_code == "ERROR"
    assert verdict.information is None
    text = verdict.result_text() or ""
    assert "cervixScreeningInformation/subjectOfCare" in text and "(schema)" in text
    assert "urn:riv" not in text.split("expected")[0]  # no libxml2 Clark names or file noise


def test_wrong_order_is_an_xsd_error() -> None:
    verdict = _check_xml("request_wrong_order.xml")
    assert verdict.result_code == "ERROR"
    assert "cervixScreeningInformation/sendingRegion" in (verdict.result_text() or "")
    assert "expected subjectOfCare" in (verdict.result_text() or "")


def test_xsd_errors_never_echo_values() -> None:
    info = _sample()
    body = build_request_envelope("14", info).replace(
        b"<core:name>Region Sk", f"<core:name>{PNR}</core:name><core:name>Region Sk".encode()
    )
    body = body.replace(f"<core:extension>{PNR}".encode(), b"<core:extension>x")
    body = body.replace(b"<core:specimenDate>", f"<core:specimenDate>{PNR}".encode())
    req = parse_request(body)
    verdict = validate_request(req.body_element, "14", today=TODAY, codes=DEFAULT_CODE_LISTS)
    assert verdict.result_code == "ERROR"
    _assert_no_personal_data(verdict)


def test_a_response_element_in_the_body_is_refused() -> None:
    req = parse_request(
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b'<r:ProcessCervixScreeningInformationResponse xmlns:r="urn:riv:clinicalprocess:logistics:'
        b'cervixscreening:ProcessCervixScreeningInformationResponder:1"><r:resultCode>OK'
        b"</r:resultCode></r:ProcessCervixScreeningInformationResponse></soap:Body></soap:Envelope>"
    )
    verdict = validate_request(req.body_element, "14", today=TODAY, codes=DEFAULT_CODE_LISTS)
    assert verdict.result_code == "ERROR"
    assert "Body" in (verdict.result_text() or "")


def test_result_text_is_bounded() -> None:
    groups = tuple(
        FollowUpGroup(CV("1", SNOMED_CT), "20240101", unit_region_of("12")) for _ in range(200)
    )
    verdict = _check(dataclasses.replace(_sample(), follow_up_groups=groups))
    text = verdict.result_text() or ""
    assert 0 < len(text) <= 2000 and text.endswith("(more problems)")


def test_helpers() -> None:
    assert is_lan_code("01") and is_lan_code("25")
    assert not is_lan_code("02") and not is_lan_code(" 01") and not is_lan_code("1")
    assert is_hsa_id("SE2321000131") and is_hsa_id("SE2321000131-XXXX")
    assert is_hsa_id("SE162321000255-O11111")
    assert not is_hsa_id("se2321000131") and not is_hsa_id("SE232100013") and not is_hsa_id("")
    assert abs((swedish_today() - datetime.date.today()).days) <= 1


def test_concurrent_validations_keep_their_own_errors() -> None:
    from concurrent.futures import ThreadPoolExecutor

    good = _sample()
    bad = _specimen_date("2024-06-01")(_sample())

    def run(n: int) -> str:
        return _check(good if n % 2 else bad).result_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(run, range(64)))
    assert codes == ["OK" if n % 2 else "ERROR" for n in range(64)]


def test_threads_compile_the_schema_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # libxml2's schema compiler is not thread-safe on first use: right after a start, threads
    # compiling at once failed ("the given type '' is not a built-in type") or crashed the
    # process with SIGSEGV (tests/test_crash.py caught it). Each thread still gets its own copy.
    import threading
    import time
    from typing import Any

    from hub.contract import wsdl as validate

    running, most = 0, 0
    count_lock = threading.Lock()
    real = validate.load_schema

    def slow_load(folder: Path | None = None) -> Any:
        nonlocal running, most
        with count_lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)  # long enough for the others to try
        try:
            return real(folder)
        finally:
            with count_lock:
                running -= 1

    monkeypatch.setattr(validate, "load_schema", slow_load)
    compiled: list[Any] = []
    threads = [
        threading.Thread(target=lambda: compiled.append(validate.schema())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(compiled) == 8 and len({id(c) for c in compiled}) == 8
    assert most == 1


# A personnummer, and other text (a name) that fits everywhere a name or a value can stand.
_SECRETS = (
    personnummer.generate(random.Random(7), born=datetime.date(1985, 1, 1)),
    "KarinSvensson",
)


@pytest.mark.parametrize("secret", _SECRETS)
@pytest.mark.parametrize("probe", sorted(schema_probes(PNR, _SECRETS[0])))
def test_schema_problems_say_only_our_own_words(probe: str, secret: str) -> None:
    # Issue 17, defect 7: libxml2 quotes values and names; a sender can make any of them a
    # personnummer (or other text), and resultText goes back over the platform and into logs.
    # Every schema problem must be one of our fixed texts, at a path of declared names or "*".
    req = parse_request(schema_probes(PNR, secret)[probe])
    verdict = validate_request(req.body_element, "14", today=TODAY, codes=DEFAULT_CODE_LISTS)
    assert verdict.result_code == "ERROR"
    schema = [p for p in verdict.problems if p.rule == "schema"]
    assert schema, verdict.result_text()
    names = {name.rpartition("}")[2] for name in declared_element_names()}
    for problem in schema:
        message, _, hint = problem.message.partition("; expected ")
        assert message in SCHEMA_MESSAGES, problem
        assert all(name in names for name in hint.split(", ") if hint), problem
        steps = [re.sub(r"\[\d+\]$", "", step) for step in problem.path.split("/")]
        assert all(
            step in names or step in ("*", "ProcessCervixScreeningInformation") for step in steps
        ), problem
    text = verdict.result_text() or ""
    parts = (secret, secret[:8], secret[2:], secret[8:]) if secret.isdigit() else (secret,)
    for part in parts:
        assert part not in text, text


def test_a_long_schema_error_log_makes_a_bounded_list_of_problems() -> None:
    body = build_request_envelope("14", _sample())
    end = b"</tjsr:cervixScreeningInformation>"
    wrapper = b'<x:w xmlns:x="urn:x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    wrapper += b'xmlns:xs="http://www.w3.org/2001/XMLSchema">'
    typed = b'<x:v xsi:type="xs:int">n</x:v>'
    req = parse_request(body.replace(end, wrapper + typed * 900 + b"</x:w>" + end))
    verdict = validate_request(req.body_element, "14", today=TODAY, codes=DEFAULT_CODE_LISTS)
    assert verdict.result_code == "ERROR"
    assert len(verdict.problems) == MAX_SCHEMA_PROBLEMS
