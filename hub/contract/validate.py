"""Validate a request: the XSDs in ``wsdl/`` first, then the contract rules (docs/contract.md).

Nothing in a Problem's message repeats a value from the request: resultText goes back over the
platform and into logs, and the values are personal data (personnummer, dates, free text).
"""

import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
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
from hub.contract.wsdl import schema

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

_STEP_RE: Final = re.compile(r"^(?:[^:\[]+:)?([^\[]+)(\[\d+\])?$")
_QUOTED_RE: Final = re.compile(r"'[^']*'")
_CLARK_RE: Final = re.compile(r"\{[^}]*\}")


def _xsd_path(xpath: str | None) -> str:
    """Turn libxml2's XPath into a payload-relative path of local names.

    ``/tjsr:Process…/tjsr:cervixScreeningInformation/core:subjectOfCare`` becomes
    ``cervixScreeningInformation/subjectOfCare``. The operation element is dropped because every
    other path in resultText starts at the payload.
    """
    steps: list[str] = []
    for raw in (xpath or "").split("/"):
        m = _STEP_RE.match(raw)
        if m and m.group(1) != "*":
            steps.append(m.group(1) + (m.group(2) or ""))
    if steps and steps[0] == "ProcessCervixScreeningInformation":
        steps = steps[1:]
    return "/".join(steps) or "ProcessCervixScreeningInformation"


def _xsd_message(entry: Any) -> str:
    """A data-free message for one libxml2 schema error.

    libxml2 quotes values in its messages (``The value '…' is not accepted by the pattern``), so
    known error types get our own wording and anything else loses every quoted part.
    """
    kind = entry.type_name
    if kind == "SCHEMAV_CVC_PATTERN_VALID":
        return "value does not have the required form (dates: YYYYMMDD)"
    if kind == "SCHEMAV_CVC_ENUMERATION_VALID":
        return "value is not one of the allowed values"
    message: str = entry.message
    # Keep "Expected is ( subjectOfCare )": element names help and are not personal data.
    expected = re.search(r"Expected is (?:one of )?\(([^)]*)\)", message)
    wanted = f"; expected {_CLARK_RE.sub('', expected.group(1)).strip()}" if expected else ""
    if kind == "SCHEMAV_ELEMENT_CONTENT":
        return "unexpected element here (wrong name, namespace or order)" + wanted
    if kind == "SCHEMAV_CVC_COMPLEX_TYPE_2_4":
        return "missing child element" + wanted
    if kind in ("SCHEMAV_CVC_COMPLEX_TYPE_2_3", "SCHEMAV_CVC_COMPLEX_TYPE_2_1"):
        return "text content is not allowed here"
    message = re.sub(r"^Element [^:]*: ", "", message)
    return "does not conform to the schema: " + _QUOTED_RE.sub("…", _CLARK_RE.sub("", message))


def _xsd_problems(el: etree._Element) -> list[Problem]:
    compiled = schema()
    if compiled.validate(el):
        return []
    return [
        Problem(_xsd_path(e.path), RULE_SCHEMA, _xsd_message(e))
        for e in compiled.error_log
        if e.level >= etree.ErrorLevels.ERROR
    ]


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
