"""Put records approved for disclosure into a region's outbox.

Each record is validated with the producer's own contract code for its destination, its request
envelope is built once (zeep, from ``wsdl/``) and stored sealed with the region's key; the same
content approved twice for the same destination is queued once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from lxml import etree  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from hub.audit import AccessEntry, Action, record_access_many
from hub.clock import swedish_today, utcnow
from hub.contract.canonical import canonical_bytes
from hub.contract.model import CervixScreeningInformation
from hub.contract.names import OPERATION, OPERATION_TAG, PAYLOAD_TAG, RESPONDER_NS
from hub.contract.parse import information_from_element
from hub.contract.regions import REGIONS
from hub.contract.serialise import information_to_element
from hub.contract.validate import validate_request
from hub.db.region_tables import outbox
from hub.outbound.client import build_envelope
from hub.outbound.states import QUEUED, OutboxError
from hub.tenancy.access import Permission, RegionScope

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enqueued:
    """The outcome of :func:`enqueue`: the record's id, and whether it was already queued."""

    record_id: str
    duplicate: bool
    correlation_id: str
    #: Our own validation's INFO text (soft problems the receiver will also mention), if any.
    check_text: str | None = None


def _payload_element(
    information_or_element: CervixScreeningInformation | etree._Element,
) -> etree._Element:
    if isinstance(information_or_element, CervixScreeningInformation):
        return information_to_element(information_or_element)
    element = information_or_element
    if element.tag == OPERATION_TAG:
        found = element.find(PAYLOAD_TAG)
        if found is None:
            raise OutboxError(f"{OPERATION} has no cervixScreeningInformation")
        return found
    if element.tag != PAYLOAD_TAG:
        raise OutboxError(
            f"expected {OPERATION} or cervixScreeningInformation in namespace {RESPONDER_NS}"
        )
    return element


def _require_active(scope: RegionScope) -> None:
    if not scope.region.is_active(swedish_today()):
        raise OutboxError(f"region {scope.lan}: the agreement is not active; nothing may be sent")


def _prepare(
    scope: RegionScope,
    to_lan: str,
    information_or_element: CervixScreeningInformation | etree._Element,
    reference: str | None,
    today: date,
) -> dict[str, Any]:
    """Validate one record and build its outbox row (not yet stored); OutboxError if refused."""
    region, cipher, lan = scope.region, scope.cipher, scope.lan
    if to_lan not in REGIONS:
        raise OutboxError(f"destination {to_lan!r} is not a län code")
    if to_lan == lan:
        raise OutboxError("a region does not send to itself")
    if reference is not None and len(reference) > 200:
        raise OutboxError("reference is longer than 200 characters")
    payload = _payload_element(information_or_element)
    operation = etree.Element(OPERATION_TAG)
    operation.append(etree.fromstring(etree.tostring(payload)))
    verdict = validate_request(operation, to_lan, today=today, codes=scope.hub.codes)
    if verdict.result_code == "ERROR" or verdict.information is None:
        raise OutboxError(f"record refused: {verdict.result_text() or 'invalid'}")
    information = verdict.information
    sender = information.sending_region.region.id.extension
    if sender not in (region.hsa_id, REGIONS[lan].hsa_root):
        # A region sends in its own name only; anything else is a mix-up of extracts.
        raise OutboxError(
            "record refused: sendingRegion/region/id is not the sending region's HSA-id"
        )
    envelope = build_envelope(to_lan, operation)
    # zeep read the payload through the schema; make sure nothing was lost on the way.
    sent = etree.fromstring(envelope).find(f".//{PAYLOAD_TAG}")
    if sent is None or information_from_element(sent) != information:
        raise OutboxError("internal: the request envelope does not carry the approved record")
    pnr = information.subject_of_care.person_id.extension or ""
    now = utcnow()
    return {
        "id": str(uuid.uuid4()),
        "created_at": now,
        "updated_at": now,
        "created_by": scope.actor.label,
        "to_lan": to_lan,
        "state": QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "correlation_id": str(uuid.uuid4()),
        "content_hash": cipher.keyed_hash(canonical_bytes(payload)),
        "pnr_hash": cipher.keyed_hash(pnr),
        "pnr_enc": cipher.seal(pnr.encode(), "pnr"),
        "request_enc": cipher.seal(envelope, "outbox-request"),
        "kind": information.kind,
        "summary": information.summary(),
        "reference": reference,
        "check_text": verdict.result_text() if verdict.result_code == "INFO" else None,
    }


def _existing(connection: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """Already queued records by (destination, content hash)."""
    found: dict[tuple[str, str], Any] = {}
    hashes = sorted({h for _, h in keys})
    for start in range(0, len(hashes), 500):
        rows = connection.execute(
            select(
                outbox.c.id,
                outbox.c.to_lan,
                outbox.c.content_hash,
                outbox.c.correlation_id,
                outbox.c.check_text,
            ).where(outbox.c.content_hash.in_(hashes[start : start + 500]))
        )
        for row in rows:
            found[(row.to_lan, row.content_hash)] = row
    return found


def _store(scope: RegionScope, rows: list[dict[str, Any]]) -> list[Enqueued]:
    """Insert new rows, answer duplicates with the record already queued (one transaction)."""
    results: list[Enqueued] = []
    with scope.engine.begin() as connection:
        existing = _existing(connection, [(r["to_lan"], r["content_hash"]) for r in rows])
        fresh: list[dict[str, Any]] = []
        for row in rows:
            key = (row["to_lan"], row["content_hash"])
            first = existing.get(key)
            if first is not None:
                results.append(Enqueued(first.id, True, first.correlation_id, first.check_text))
                continue
            existing[key] = _RowLike(row)
            fresh.append(row)
            results.append(Enqueued(row["id"], False, row["correlation_id"], row["check_text"]))
        if fresh:
            connection.execute(insert(outbox), fresh)
            record_access_many(
                connection,
                scope.actor,
                [
                    AccessEntry(
                        Action.OUTBOX_ENQUEUED, r["id"], f"to {r['to_lan']}", at=r["created_at"]
                    )
                    for r in fresh
                ],
            )
    return results


@dataclass(frozen=True)
class _RowLike:
    """A row queued earlier in the same batch, shaped like a selected row."""

    row: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def correlation_id(self) -> str:
        return str(self.row["correlation_id"])

    @property
    def check_text(self) -> str | None:
        value = self.row["check_text"]
        return None if value is None else str(value)


def enqueue(
    scope: RegionScope,
    to_lan: str,
    information_or_element: CervixScreeningInformation | etree._Element,
    *,
    reference: str | None = None,
) -> Enqueued:
    """Queue one record, approved for disclosure by the scope's actor, in its region's outbox.

    The record is validated with the contract code (XSD and the contract rules, LogicalAddress =
    ``to_lan``) and refused with :class:`OutboxError` naming field and rule when invalid. The
    request envelope is built once (zeep, from ``wsdl/``) and stored sealed with the region's key.
    The destination is ``to_lan``. Approving the same content for the same destination twice
    queues it once (``duplicate``).
    ``reference`` is the caller's own handle for receipts (an extract and line, a file name): it
    must not contain personal data.
    """
    scope.require(Permission.DECIDE)
    _require_active(scope)
    row = _prepare(scope, to_lan, information_or_element, reference, swedish_today())
    try:
        [queued] = _store(scope, [row])
    except IntegrityError:
        # The same record approved at the same moment by another process: it is queued once.
        [queued] = _store(scope, [row])
    if not queued.duplicate:
        log.info(
            "region %s: record %s queued for %s (%s)",
            scope.lan,
            queued.record_id,
            to_lan,
            row["kind"],
        )
    return queued


@dataclass(frozen=True)
class Approval:
    """One record of a batch for :func:`enqueue_many`."""

    to_lan: str
    record: CervixScreeningInformation | etree._Element
    reference: str | None = None


def enqueue_many(scope: RegionScope, approvals: Iterable[Approval]) -> list[Enqueued | OutboxError]:
    """Queue many approved records of the scope's region in one transaction (a batch).

    Each record is checked as :func:`enqueue` checks it; the answer list has, per approval in
    order, its :class:`Enqueued` or the :class:`OutboxError` that refused it (the others are
    queued all the same).
    """
    scope.require(Permission.DECIDE)
    _require_active(scope)
    today = swedish_today()
    answers: list[Enqueued | OutboxError | None] = []
    rows: list[dict[str, Any]] = []
    for approval in approvals:
        try:
            rows.append(
                _prepare(scope, approval.to_lan, approval.record, approval.reference, today)
            )
            answers.append(None)
        except OutboxError as exc:
            answers.append(exc)
    try:
        stored = iter(_store(scope, rows))
    except IntegrityError:
        stored = iter(_store(scope, rows))
    result: list[Enqueued | OutboxError] = [
        answer if answer is not None else next(stored) for answer in answers
    ]
    log.info("region %s: %d record(s) queued in one batch", scope.lan, len(rows))
    return result
