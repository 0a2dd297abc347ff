"""Validate a request: the XSDs in ``wsdl/`` first, then the contract rules (docs/contract.md).

Nothing in a Problem's message repeats a value from the request: resultText goes back over the
platform and into logs, and the values are personal data (personnummer, dates, free text).
"""

import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Literal

from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from hub.contract import personnummer
from hub.contract.codes import CodeLists
from hub.contract.hsaid import is_hsa_id
from hub.contract.model import CV, CervixScreeningInformation, Organisation, Region
from hub.contract.names import (
    HSA_ID_ROOT,
    OPERATION_TAG,
    PAYLOAD_TAG,
    PERSON_ID_ROOT,
    RESPONDER_NS,
    SNOMED_CT,
)
from hub.contract.parse import ModelError, information_from_element
from hub.contract.regions import is_lan_code
from hub.contract.wsdl import declared_element_names, schema

__all__ = ["Problem", "Verdict", "validate_request"]

# resultText is for people reading a log at the consumer; past this length it stops helping.
MAX_RESULT_TEXT: Final = 2000

# The rules a problem cites, by name: an answer goes back to a caller who cannot see our
# documents, so it names the rule itself (docs/contract.md lists each with what it checks).
RULE_SCHEMA: Final = "schema"
RULE_PERSONNUMMER: Final = "personnummer rule"
RULE_HSA_ID: Final = "HSA-id rule"
RULE_SENDER: Final = "sending region rule"
RULE_CODES: Final = "SNOMED CT code list rule"
RULE_DATES: Final = "date rule"
RULE_HPV: Final = "HPV status rule"
RULE_ADDRESS: Final = "logical address rule"
#: Accepted, with a note (INFO): not worth refusing the message for.
RULE_NOTE: Final = "note"

Severity = Literal["error", "info"]
ResultCode = Literal["OK", "INFO", "ERROR"]

_PAYLOAD: Final = "cervixScreeningInformation"


# --- verdict ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: where, which rule, what (never the offending value)."""

    path: str
    rule: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.rule})"


@dataclass
class Verdict:
    """The outcome of validating one request."""

    problems: list[Problem] = field(default_factory=list)
    information: CervixScreeningInformation | None = None

    @property
    def result_code(self) -> ResultCode:
        """ERROR if any problem is an error, INFO if there are only soft problems, else OK."""
        if any(p.severity == "error" for p in self.problems):
            return "ERROR"
        return "INFO" if self.problems else "OK"

    @property
    def errors(self) -> list[Problem]:
        """The problems that make the request fail."""
        return [p for p in self.problems if p.severity == "error"]

    def result_text(self) -> str | None:
        """The resultText to answer with: None for OK, else every problem with its path and rule.

        With ERROR, only the errors are listed: the soft problems do not matter to a message that
        counts as not received.
        """
        code = self.result_code
        if code == "OK":
            return None
        shown = self.errors if code == "ERROR" else self.problems
        text = f"{code}: " + "; ".join(str(p) for p in shown)
        if len(text) > MAX_RESULT_TEXT:
            text = text[: MAX_RESULT_TEXT - 20].rsplit("; ", 1)[0] + "; … (more problems)"
        return text


# --- XSD errors ------------------------------------------------------------------------------

# libxml2's messages quote the input: values, and the names of elements, attributes, namespaces
# and types, any of which a sender can make personnummer-shaped. None of its text is passed on:
# each error becomes one of the fixed texts below, chosen by its kind, and its path and
# "expected" hint keep only names the contract's schemas declare.
_SCHEMA_WORDING: Final = {
    "SCHEMAV_CVC_PATTERN_VALID": "value does not have the required form (dates: YYYYMMDD)",
    "SCHEMAV_CVC_ENUMERATION_VALID": "value is not one of the allowed values",
    "SCHEMAV_ELEMENT_CONTENT": "unexpected element here (wrong name, namespace or order)",
    "SCHEMAV_CVC_COMPLEX_TYPE_2_4": "missing child element",
    "SCHEMAV_CVC_COMPLEX_TYPE_2_1": "text content is not allowed here",
    "SCHEMAV_CVC_COMPLEX_TYPE_2_3": "text content is not allowed here",
    "SCHEMAV_CVC_COMPLEX_TYPE_2_2": "child elements are not allowed here",
    "SCHEMAV_CVC_TYPE_3_1_2": "child elements are not allowed here",
    "SCHEMAV_CVC_COMPLEX_TYPE_3_1": "an attribute is not allowed here",
    "SCHEMAV_CVC_COMPLEX_TYPE_3_2_1": "an attribute is not allowed here",
    "SCHEMAV_CVC_COMPLEX_TYPE_3_2_2": "an attribute is not allowed here",
    "SCHEMAV_CVC_TYPE_3_1_1": "an attribute is not allowed here",
    "SCHEMAV_CVC_COMPLEX_TYPE_4": "a required attribute is missing",
    "SCHEMAV_CVC_ELT_1": "element is not declared in the schema",
    "SCHEMAV_CVC_ELT_2": "element is abstract",
    "SCHEMAV_CVC_ELT_3_1": "xsi:nil is not allowed here",
    "SCHEMAV_CVC_ELT_3_2_1": "xsi:nil is not allowed here",
    "SCHEMAV_CVC_ELT_3_2_2": "xsi:nil is not allowed here",
    "SCHEMAV_CVC_ELT_4_1": "xsi:type does not name a type that can be used here",
    "SCHEMAV_CVC_ELT_4_2": "xsi:type does not name a type that can be used here",
    "SCHEMAV_CVC_ELT_4_3": "xsi:type does not name a type that can be used here",
    "SCHEMAV_CVC_TYPE_1": "xsi:type does not name a type that can be used here",
    "SCHEMAV_CVC_TYPE_2": "xsi:type does not name a type that can be used here",
}
_VALUE_WORDING: Final = "value is not valid for its type"
# Every other kind of error (value facets, datatype checks, fixed values, identity constraints).
_OTHER_WORDING: Final = "does not conform to the schema"
_VALUE_KINDS: Final = frozenset(
    {
        "SCHEMAV_CVC_DATATYPE_VALID_1_2_1",
        "SCHEMAV_CVC_DATATYPE_VALID_1_2_2",
        "SCHEMAV_CVC_DATATYPE_VALID_1_2_3",
        "SCHEMAV_CVC_FACET_VALID",
        "SCHEMAV_CVC_LENGTH_VALID",
        "SCHEMAV_CVC_MINLENGTH_VALID",
        "SCHEMAV_CVC_MAXLENGTH_VALID",
        "SCHEMAV_CVC_MININCLUSIVE_VALID",
        "SCHEMAV_CVC_MAXINCLUSIVE_VALID",
        "SCHEMAV_CVC_MINEXCLUSIVE_VALID",
        "SCHEMAV_CVC_MAXEXCLUSIVE_VALID",
        "SCHEMAV_CVC_TOTALDIGITS_VALID",
        "SCHEMAV_CVC_FRACTIONDIGITS_VALID",
        "SCHEMAV_CVC_ATTRIBUTE_3",
        "SCHEMAV_CVC_AU",
    }
)
_XSI_TYPE: Final = "attribute '{http://www.w3.org/2001/XMLSchema-instance}type'"
_XSI_NIL: Final = "attribute '{http://www.w3.org/2001/XMLSchema-instance}nil'"
#: Every text a schema problem can have, before an "; expected …" hint of declared names.
SCHEMA_MESSAGES: Final = frozenset({*_SCHEMA_WORDING.values(), _VALUE_WORDING, _OTHER_WORDING})
# resultText shows some twenty problems at most; the rest of a long error log would only cost.
MAX_SCHEMA_PROBLEMS: Final = 50

_STEP_RE: Final = re.compile(r"^(?:[^:\[]+:)?([^\[]+)(\[\d+\])?$")
_EXPECTED_RE: Final = re.compile(r"Expected is (?:one of )?\(([^)]*)\)")


@lru_cache(maxsize=1)
def _declared() -> tuple[frozenset[str], frozenset[str]]:
    """The contract's element names: qualified (``{ns}local``), and their local names."""
    qualified = declared_element_names()
    return qualified, frozenset(name.rpartition("}")[2] for name in qualified)


def _xsd_path(xpath: str | None) -> str:
    """Turn libxml2's XPath into a payload-relative path of the contract's local names.

    ``/tjsr:Process…/tjsr:cervixScreeningInformation/core:subjectOfCare`` becomes
    ``cervixScreeningInformation/subjectOfCare``. The operation element is dropped because every
    other path in resultText starts at the payload. A name the contract does not declare (an
    extension element's, which a sender chooses freely) is written ``*``.
    """
    local_names = _declared()[1]
    steps: list[str] = []
    for raw in (xpath or "").split("/"):
        m = _STEP_RE.match(raw)
        if m and m.group(1) != "*":
            name = m.group(1) if m.group(1) in local_names else "*"
            steps.append(name + (m.group(2) or ""))
    if steps and steps[0] == "ProcessCervixScreeningInformation":
        steps = steps[1:]
    return "/".join(steps) or "ProcessCervixScreeningInformation"


def _expected(message: str) -> str:
    """The hint "; expected a, b" with only the declared names libxml2 lists as expected."""
    found = _EXPECTED_RE.findall(message)
    if not found:
        return ""
    qualified = _declared()[0]
    # The last match: the element's own name, earlier in the message, could imitate one.
    names = [n.strip() for n in found[-1].split(",")]
    kept = [n.rpartition("}")[2] for n in names if n in qualified]
    return f"; expected {', '.join(dict.fromkeys(kept))}" if kept else ""


def _xsd_message(entry: Any) -> str:
    """A fixed text for one libxml2 schema error (:data:`SCHEMA_MESSAGES`), never its own."""
    kind = entry.type_name
    message: str = entry.message or ""
    if kind in _VALUE_KINDS:
        # The value checked may be the xsi:type or xsi:nil attribute's rather than the element's.
        if _XSI_TYPE in message:
            return _SCHEMA_WORDING["SCHEMAV_CVC_ELT_4_1"]
        if _XSI_NIL in message:
            return _SCHEMA_WORDING["SCHEMAV_CVC_ELT_3_1"]
        return _VALUE_WORDING
    wording = _SCHEMA_WORDING.get(kind, _OTHER_WORDING)
    if kind in ("SCHEMAV_ELEMENT_CONTENT", "SCHEMAV_CVC_COMPLEX_TYPE_2_4"):
        return wording + _expected(message)
    return wording


def _xsd_problems(el: etree._Element) -> list[Problem]:
    compiled = schema()
    if compiled.validate(el):
        return []
    problems: list[Problem] = []
    for e in compiled.error_log:
        if e.level >= etree.ErrorLevels.ERROR:
            problems.append(Problem(_xsd_path(e.path), RULE_SCHEMA, _xsd_message(e)))
            if len(problems) == MAX_SCHEMA_PROBLEMS:
                break
    return problems


# --- contract rules --------------------------------------------------------------------------


def _real_date(value: str) -> datetime.date | None:
    # The XSD pattern already made it eight digits (YYYYMMDD); only the calendar is left to check.
    # date() does that far cheaper than strptime, on the hot path of every call.
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        return datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def _organisations(path: str, region: Region) -> Iterator[tuple[str, Organisation]]:
    yield f"{path}/region", region.region
    if region.care_giver is not None:
        yield f"{path}/careGiver", region.care_giver
    if region.care_unit is not None:
        yield f"{path}/careUnit", region.care_unit


class _Checker:
    """Walks the model once per rule and collects problems with payload-relative paths."""

    def __init__(
        self, info: CervixScreeningInformation, today: datetime.date, codes: CodeLists
    ) -> None:
        self.info = info
        self.today = today
        self.codes = codes
        self.problems: list[Problem] = []
        self.born = personnummer.birth_date(info.subject_of_care.person_id.extension or "")

    def error(self, path: str, rule: str, message: str) -> None:
        self.problems.append(Problem(f"{_PAYLOAD}/{path}", rule, message, "error"))

    def info_(self, path: str, rule: str, message: str) -> None:
        self.problems.append(Problem(f"{_PAYLOAD}/{path}", rule, message, "info"))

    def regions(self) -> Iterator[tuple[str, Region]]:
        info = self.info
        yield "sendingRegion", info.sending_region
        if info.exclusion is not None:
            yield "exclusion/originalRegion", info.exclusion.original_region
        for i, group in enumerate(info.follow_up_groups, 1):
            yield f"followUpGroups[{i}]/originalRegion", group.original_region
        if info.specimen is not None:
            yield "specimen/originalRegion", info.specimen.original_region

    def coded(self) -> Iterator[tuple[str, CV, frozenset[str], str]]:
        info = self.info
        if info.exclusion is not None:
            yield "exclusion/reason", info.exclusion.reason, self.codes.exclusion_reasons, "reason"
        for i, group in enumerate(info.follow_up_groups, 1):
            yield f"followUpGroups[{i}]/type", group.type, self.codes.followup_types, "type"
        if info.specimen is not None:
            for i, status in enumerate(info.specimen.hpv_status_list, 1):
                yield (
                    f"specimen/HPVstatusList[{i}]/value",
                    status.value,
                    self.codes.hpv_values,
                    ("HPV status"),
                )

    def past_dates(self) -> Iterator[tuple[str, str]]:
        info = self.info
        if info.exclusion is not None:
            yield "exclusion/registeredAt", info.exclusion.registered_at
        for i, group in enumerate(info.follow_up_groups, 1):
            yield f"followUpGroups[{i}]/inclusionDate", group.inclusion_date
        if info.specimen is not None:
            yield "specimen/specimenDate", info.specimen.specimen_date

    def rule1_person(self) -> None:
        pid = self.info.subject_of_care.person_id
        path = "subjectOfCare/personId"
        if pid.root != PERSON_ID_ROOT:
            self.error(
                f"{path}/root",
                RULE_PERSONNUMMER,
                f"must be {PERSON_ID_ROOT} (Swedish personnummer)",
            )
        if pid.extension is None:
            self.error(
                f"{path}/extension", RULE_PERSONNUMMER, "is missing; a personnummer is required"
            )
            return
        reason = personnummer.check(pid.extension)
        if reason is not None:
            self.error(
                f"{path}/extension", RULE_PERSONNUMMER, f"is not a valid personnummer: it {reason}"
            )

    def rule2_hsa(self) -> None:
        for rpath, region in self.regions():
            for opath, org in _organisations(rpath, region):
                if org.id.root != HSA_ID_ROOT:
                    self.error(f"{opath}/id/root", RULE_HSA_ID, f"must be {HSA_ID_ROOT} (HSA-id)")
                if org.id.extension is None:
                    self.error(
                        f"{opath}/id/extension", RULE_HSA_ID, "is missing; an HSA-id is required"
                    )
                elif not is_hsa_id(org.id.extension):
                    self.error(f"{opath}/id/extension", RULE_HSA_ID, "is not a well-formed HSA-id")

    def rule3_sender(self) -> None:
        sender = self.info.sending_region
        if sender.care_giver is not None:
            self.error("sendingRegion/careGiver", RULE_SENDER, "must not be given for the sender")
        if sender.care_unit is not None:
            self.error("sendingRegion/careUnit", RULE_SENDER, "must not be given for the sender")

    def rule4_codes(self) -> None:
        for path, cv, allowed, what in self.coded():
            if cv.code_system != SNOMED_CT:
                self.error(f"{path}/codeSystem", RULE_CODES, f"must be {SNOMED_CT} (SNOMED CT)")
            elif cv.code not in allowed:
                self.error(f"{path}/code", RULE_CODES, f"is not in the code list for {what}")

    def rule5_dates(self) -> None:
        for path, value in self.past_dates():
            day = _real_date(value)
            if day is None:
                self.error(path, RULE_DATES, "is not a real calendar date")
            elif day > self.today:
                self.error(path, RULE_DATES, "is in the future")
            elif self.born is not None and day < self.born:
                # Impossible but harmless to store; the sender should hear about it.
                self.info_(path, RULE_NOTE, "is before the birth date of the subject of care")
        planned = self.info.planned_invitation
        if planned is not None:
            day = _real_date(planned.date)
            if day is None:
                self.error("plannedInvitation/date", RULE_DATES, "is not a real calendar date")
            elif day < self.today:
                self.info_("plannedInvitation/date", RULE_NOTE, "is in the past")

    def rule6_hpv(self) -> None:
        specimen = self.info.specimen
        if specimen is None:
            return
        codes = [s.value.code for s in specimen.hpv_status_list]
        if len(set(codes)) != len(codes):
            self.error("specimen/HPVstatusList", RULE_HPV, "contains the same result twice")
        found = set(codes)
        if found & self.codes.hpv_negative and found & self.codes.hpv_positive:
            self.error(
                "specimen/HPVstatusList",
                RULE_HPV,
                "has HPV not detected together with a found type",
            )

    def rule9_soft(self) -> None:
        for path, cv, _allowed, _what in self.coded():
            if cv.code_system_name is not None:
                self.info_(f"{path}/codeSystemName", RULE_NOTE, "is not used and was ignored")
            if cv.original_text is not None:
                self.info_(f"{path}/originalText", RULE_NOTE, "is not used and was ignored")

    def run(self) -> list[Problem]:
        self.rule1_person()
        self.rule2_hsa()
        self.rule3_sender()
        self.rule4_codes()
        self.rule5_dates()
        self.rule6_hpv()
        self.rule9_soft()
        return self.problems


def _logical_address_problems(logical_address: str | None) -> list[Problem]:
    path = "Header/LogicalAddress"
    if logical_address is None or logical_address == "":
        return [Problem(path, RULE_ADDRESS, "is missing; give the receiver's two-digit län code")]
    if not is_lan_code(logical_address):
        return [Problem(path, RULE_ADDRESS, "is not a two-digit län code (no spaces)")]
    return []


def validate_request(
    body_element: etree._Element,
    logical_address: str | None,
    *,
    today: datetime.date,
    codes: CodeLists,
) -> Verdict:
    """Check the first element of soap:Body and the LogicalAddress: the XSD, then the rules.

    ``today`` is the Swedish local date (:func:`hub.clock.swedish_today`). The logical address
    rule checks only that the address is a län code; whether this hub serves it is for routing
    to decide. A message that fails the XSD is not checked further: its model cannot be trusted.
    """
    verdict = Verdict(problems=_logical_address_problems(logical_address))
    if body_element.tag != OPERATION_TAG:
        verdict.problems.append(
            Problem(
                "Body",
                RULE_SCHEMA,
                "the first element of the SOAP Body must be ProcessCervixScreeningInformation "
                f"in namespace {RESPONDER_NS}",
            )
        )
        return verdict
    xsd = _xsd_problems(body_element)
    if xsd:
        verdict.problems.extend(xsd)
        return verdict
    payload = body_element.find(PAYLOAD_TAG)
    try:
        assert payload is not None  # the XSD requires it
        info = information_from_element(payload)
    except (AssertionError, ModelError):
        verdict.problems.append(Problem(_PAYLOAD, RULE_SCHEMA, "does not conform to the schema"))
        return verdict
    verdict.information = info
    verdict.problems.extend(_Checker(info, today, codes).run())
    # R1: a message with nothing but subject and sender is valid; nothing to add here.
    return verdict
