"""Records for the review queue: checked with the contract code, stored sealed, deduplicated.

Every way a record comes in (an extract file, an upload, the API, the form, ``agenthub send``)
ends here, in :func:`prepare` (one record, no database) and :func:`store` (many prepared records
of one intake, in the caller's transaction):

- the record is validated with the producer's own contract code for its destination (XSD and
  every rule, LogicalAddress = the woman's home län code), and it must be sent in the region's
  own name; a refused record raises :class:`RecordRefused` naming field, rule and reason, never a
  value;
- a record whose home is the region itself is reported (``own_region``), not queued;
- the same content to the same destination as a record pending, decided or sent is a
  ``duplicate`` and stored once;
- new content for a woman (same destination) whose record is still undecided *supersedes* it:
  the old record stays, marked ``superseded`` and pointing at the new one, never deleted.

What is stored is the ``cervixScreeningInformation`` element exactly as it will be sent
(standalone UTF-8 XML, sealed with the region's key), the SHA-256 of its canonical form (what a
decision is taken on, :mod:`hub.review.decide`), and flags and counts for the queue.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Literal

from lxml import etree  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import Connection, select, update

from hub.clock import utcnow
from hub.contract.canonical import canonical_bytes
from hub.contract.model import CervixScreeningInformation
from hub.contract.names import OPERATION, OPERATION_TAG, PAYLOAD_TAG, RESPONDER_NS
from hub.contract.regions import REGIONS
from hub.contract.serialise import information_to_element
from hub.contract.validate import validate_request
from hub.db.region_tables import review_records
from hub.delivery.files import standalone_xml
from hub.tenancy.access import RegionScope

# States of a review record.
PENDING: Final = "pending"
#: Approved once; the region's policy wants a second reviewer for this flagged record.
SECOND_REVIEW: Final = "second_review"
APPROVED: Final = "approved"
REFUSED: Final = "refused"
SUPERSEDED: Final = "superseded"
#: Waiting for a decision: what new content for the same woman supersedes.
UNDECIDED: Final = (PENDING, SECOND_REVIEW)
RECORD_STATES: Final = (PENDING, SECOND_REVIEW, APPROVED, REFUSED, SUPERSEDED)

#: A reference is the region's own id of a record, echoed in receipts.
MAX_REFERENCE: Final = 200


class RecordRefused(ValueError):
    """A record that cannot be queued; the text names field, rule and reason, never a value."""

    def __init__(self, field: str, rule: str, reason: str) -> None:
        super().__init__(f"{field}: {reason} ({rule})")
        self.field = field
        self.rule = rule
        self.reason = reason


@dataclass(frozen=True)
class Flags:
    """The three flags the connection guide requires the review system to know."""

    #: Skyddade personuppgifter: skyddad folkbokföring or sekretessmarkering.
    protected_identity: bool = False
    #: Spärrade uppgifter.
    blocked: bool = False
    #: She objected to the disclosure.
    objection: bool = False

    @property
    def any(self) -> bool:
        """Whether the record must be decided one by one, with a reason."""
        return self.protected_identity or self.blocked or self.objection


#: A record with none of the flags.
NO_FLAGS: Final = Flags()


@dataclass(frozen=True)
class Submission:
    """One record as a region delivers it."""

    #: The woman's current home region: the destination.
    to_lan: str
    #: The record: a model, a ``cervixScreeningInformation`` element or the operation element.
    record: CervixScreeningInformation | etree._Element
    flags: Flags = NO_FLAGS
    reference: str | None = None
    #: Where in its intake the record stood (a CSV line, an XML record's number).
    line: int = 1


@dataclass(frozen=True)
class Prepared:
    """A checked record, sealed and ready to store (or, if ``own_region``, to report)."""

    submission: Submission
    own_region: bool
    row: dict[str, Any]
    check_text: str | None


Outcome = Literal["queued", "duplicate", "own_region"]


@dataclass(frozen=True)
class Stored:
    """What became of one prepared record."""

    outcome: Outcome
    #: The queued record, or for a duplicate the record it duplicates; None for own region.
    record_id: str | None
    #: Undecided records of the same woman this one superseded.
    superseded: tuple[str, ...] = ()
    check_text: str | None = None


def payload_element(record: CervixScreeningInformation | etree._Element) -> etree._Element:
    """The ``cervixScreeningInformation`` element of a record (a copy, never moved)."""
    if isinstance(record, CervixScreeningInformation):
        return information_to_element(record)
    element = record
    if element.tag == OPERATION_TAG:
        found = element.find(PAYLOAD_TAG)
        if found is None:
            raise RecordRefused(OPERATION, "schema", "has no cervixScreeningInformation")
        element = found
    elif element.tag != PAYLOAD_TAG:
        raise RecordRefused(
            "record",
            "schema",
            f"expected {OPERATION} or cervixScreeningInformation in namespace {RESPONDER_NS}",
        )
    return copy.deepcopy(element)


def prepare(scope: RegionScope, submission: Submission, today: date) -> Prepared:
    """Check one record with the contract code and seal it; :class:`RecordRefused` if invalid.

    No database access: an intake prepares a chunk of records, then stores them together.
    """
    to_lan = submission.to_lan
    if to_lan not in REGIONS:
        raise RecordRefused("home_lan", "logical address rule", "is not a län code")
    reference = submission.reference
    if reference is not None and len(reference) > MAX_REFERENCE:
        raise RecordRefused("reference", "reference", f"is longer than {MAX_REFERENCE} characters")
    payload = payload_element(submission.record)
    operation = etree.Element(OPERATION_TAG)
    operation.append(payload)
    verdict = validate_request(operation, to_lan, today=today, codes=scope.hub.codes)
    if verdict.result_code == "ERROR" or verdict.information is None:
        first = verdict.errors[0] if verdict.errors else None
        if first is None:
            raise RecordRefused("record", "schema", "is not valid")
        raise RecordRefused(first.path, first.rule, first.message)
    information = verdict.information
    sender = information.sending_region.region.id.extension
    if sender not in (scope.region.hsa_id, REGIONS[scope.lan].hsa_root):
        # A region sends in its own name only; anything else is a mix-up of extracts.
        raise RecordRefused(
            "cervixScreeningInformation/sendingRegion/region/id/extension",
            "sending region rule",
            "is not the sending region's HSA-id",
        )
    check_text = verdict.result_text() if verdict.result_code == "INFO" else None
    if to_lan == scope.lan:
        return Prepared(submission, True, {}, check_text)
    cipher = scope.cipher
    pnr = information.subject_of_care.person_id.extension or ""
    canonical = canonical_bytes(payload)
    flags = submission.flags
    now = utcnow()
    row = {
        "id": str(uuid.uuid4()),
        "created_at": now,
        "updated_at": now,
        "line": submission.line,
        "reference": reference,
        "to_lan": to_lan,
        "kind": information.kind,
        "protected_identity": flags.protected_identity,
        "blocked": flags.blocked,
        "objection": flags.objection,
        "flagged": flags.any,
        "content_sha256": hashlib.sha256(canonical).hexdigest(),
        "content_key": cipher.keyed_hash(to_lan.encode() + b"\0" + canonical),
        "pnr_hash": cipher.keyed_hash(pnr),
        "pnr_enc": cipher.seal(pnr.encode(), "pnr"),
        "content_enc": cipher.seal(standalone_xml(payload), "review-content"),
        "summary": information.summary(),
        "check_text": check_text,
        "state": PENDING,
    }
    return Prepared(submission, False, row, check_text)


def store(
    scope: RegionScope, connection: Connection, intake_id: str, prepared: Sequence[Prepared]
) -> list[Stored]:
    """Store prepared records of one intake in the caller's transaction; one answer each.

    Duplicates are found among the region's records in any state but superseded, and among the
    records of this very call; a record supersedes the undecided records of the same woman for
    the same destination (stored before it, in this call or earlier).
    """
    keys = sorted({p.row["content_key"] for p in prepared if not p.own_region})
    existing: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        rows = connection.execute(
            select(review_records.c.content_key, review_records.c.id).where(
                review_records.c.content_key.in_(keys[start : start + 500]),
                review_records.c.state != SUPERSEDED,
            )
        )
        for key, record_id in rows:
            existing.setdefault(key, record_id)
    answers: list[Stored] = []
    fresh: list[dict[str, Any]] = []
    for item in prepared:
        if item.own_region:
            answers.append(Stored("own_region", None, check_text=item.check_text))
            continue
        row = item.row
        first = existing.get(row["content_key"])
        if first is not None:
            answers.append(Stored("duplicate", first, check_text=item.check_text))
            continue
        existing[row["content_key"]] = row["id"]
        fresh.append({**row, "intake_id": intake_id})
        answers.append(Stored("queued", row["id"], check_text=item.check_text))
    if fresh:
        connection.execute(review_records.insert(), fresh)
    superseded = _supersede(connection, fresh)
    return [
        Stored(a.outcome, a.record_id, superseded.get(a.record_id or "", ()), a.check_text)
        for a in answers
    ]


def _supersede(connection: Connection, fresh: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Mark older undecided records of the same women and destinations as superseded."""
    if not fresh:
        return {}
    # The newest record per (woman, destination) of this call supersedes every older one.
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in fresh:
        newest[(row["pnr_hash"], row["to_lan"])] = row
    hashes = sorted({pnr for pnr, _ in newest})
    older: dict[tuple[str, str], list[str]] = {}
    for start in range(0, len(hashes), 500):
        rows = connection.execute(
            select(review_records.c.id, review_records.c.pnr_hash, review_records.c.to_lan).where(
                review_records.c.pnr_hash.in_(hashes[start : start + 500]),
                review_records.c.state.in_(UNDECIDED),
            )
        )
        for record_id, pnr_hash, to_lan in rows:
            winner = newest.get((pnr_hash, to_lan))
            if winner is not None and winner["id"] != record_id:
                older.setdefault((pnr_hash, to_lan), []).append(record_id)
    done: dict[str, tuple[str, ...]] = {}
    now = utcnow()
    for key, ids in older.items():
        winner_id = newest[key]["id"]
        connection.execute(
            update(review_records)
            .where(review_records.c.id.in_(ids), review_records.c.state.in_(UNDECIDED))
            .values(state=SUPERSEDED, superseded_by=winner_id, updated_at=now)
        )
        done[winner_id] = tuple(sorted(ids))
    return done
