"""Receipts: each record's final state goes back to the sending region's ``receipts/`` folder.

One JSON file per final state, named ``<UTC time>_<record id>_<state>.json`` (e.g.
``20261122T101501Z_6f1c…_delivered.json``), written atomically (temporary dot-name, then rename)
and never overwritten. A record the reviewer refused gets one ``withheld`` receipt; a sent record
one per final state (an operator's resend may give it a second). The receipt identifies the
woman only by a masked personnummer and the region's own ``reference``: the region matches
receipts to its records by ``record_id`` (the id it got when the record was taken in) or
``reference``.

Format (``receipt_version`` 2; version 1 named the outbox id ``record_id`` and had no
``withheld``)::

    {
      "receipt_version": 2,
      "record_id": "6f1c…",            # the review record's id, given at intake
                                       # (null: queued before the review existed)
      "outbox_id": "9a70…" | null,     # null when withheld (never queued for sending)
      "decision_id": "c2d4…" | null,   # the final decision (approval, or the refusal)
      "reference": "extract-2026-11-22.csv:17" | null,
      "correlation_id": "…" | null,    # x-skltp-correlation-id sent on every attempt
      "from_lan": "14", "to_lan": "01",
      "kind": "move" | "sample" | "treatment" | "no_information",
      "subject": "19620120-****",     # masked personnummer
      "state": "delivered" | "refused" | "failed" | "withheld",
      "result_code": "OK" | "INFO" | "ERROR" | null,
      "result_text": "…" | null,       # the receiver's INFO/ERROR text (masked)
      "fault_code": "VP004" | "TIMEOUT" | … | null,   # failed: the last reason
      "last_error": "…" | null,
      "attempts": 1,                   # 0 when withheld
      "decided_by": "SE2321000131-A1" | null,  # the final decision's reviewer (HSA-id, or name)
      "decided_at": "2026-11-22T10:14:00.000000+00:00" | null,
      "queued_at": "2026-11-22T10:00:00.123456+00:00",  # taken into the review queue
      "final_at": "2026-11-22T10:15:01.456789+00:00"    # withheld: when refused
    }
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update

from hub.clock import as_utc, utcnow
from hub.context import Hub
from hub.db import StoreMissing
from hub.db.region_tables import decisions, outbox, review_records
from hub.drops.base import RECEIPTS, Drop
from hub.drops.session import region_drop
from hub.drops.state import Backoff
from hub.outbound.states import FINAL_STATES
from hub.review.records import REFUSED
from hub.tenancy.access import region_cipher
from hub.tenancy.keys import KeyDestroyed, masked_personnummer
from hub.tenancy.registry import MemberRegion, list_regions

log = logging.getLogger(__name__)

RECEIPT_VERSION = 2
#: The state of a receipt for a record the reviewer refused: it was never sent.
WITHHELD = "withheld"
RECEIPT_STATES = (*FINAL_STATES, WITHHELD)


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value is not None else None


def receipt_name(final_at: datetime | None, record_id: str, state: str) -> str:
    """``<final time>_<record id>_<state>.json``: unique per final state, sortable by time."""
    when = as_utc(final_at) or utcnow()
    return f"{when:%Y%m%dT%H%M%SZ}_{record_id}_{state}.json"


def _decided_by(row: Any) -> str | None:
    who = row.reviewer_hsa_id or row.reviewer_name
    return str(who) if who else None


def receipt_document(row: Any, lan: str, subject: str) -> dict[str, Any]:
    """The receipt of one outbox row joined with its review record and final decision (see
    the module docstring for the format)."""
    return {
        "receipt_version": RECEIPT_VERSION,
        "record_id": row.review_record_id,
        "outbox_id": row.id,
        "decision_id": row.decision_id,
        "reference": row.reference,
        "correlation_id": row.correlation_id,
        "from_lan": lan,
        "to_lan": row.to_lan,
        "kind": row.kind,
        "subject": subject,
        "state": row.state,
        "result_code": row.result_code,
        "result_text": row.result_text,
        "fault_code": row.fault_code,
        "last_error": row.last_error,
        "attempts": row.attempts,
        # Records queued before the review have no decision: their approver's label stands in.
        "decided_by": _decided_by(row) if row.decision_id else row.created_by,
        "decided_at": _iso(row.decided_at),
        "queued_at": _iso(row.record_created_at or row.created_at),
        "final_at": _iso(row.final_at),
    }


def withheld_document(row: Any, lan: str, subject: str) -> dict[str, Any]:
    """The receipt of a record the reviewer refused: never sent, and never will be."""
    return {
        "receipt_version": RECEIPT_VERSION,
        "record_id": row.id,
        "outbox_id": None,
        "decision_id": row.decision_id,
        "reference": row.reference,
        "correlation_id": None,
        "from_lan": lan,
        "to_lan": row.to_lan,
        "kind": row.kind,
        "subject": subject,
        "state": WITHHELD,
        "result_code": None,
        "result_text": None,
        "fault_code": None,
        "last_error": None,
        "attempts": 0,
        "decided_by": _decided_by(row),
        "decided_at": _iso(row.decided_at),
        "queued_at": _iso(row.created_at),
        "final_at": _iso(row.decided_at),
    }


def _sent_owed(connection: Any, limit: int) -> list[Any]:
    """Outbox records in a final state whose receipt is not written, with record and decision."""
    query = (
        select(
            outbox,
            review_records.c.created_at.label("record_created_at"),
            decisions.c.reviewer_hsa_id,
            decisions.c.reviewer_name,
            decisions.c.decided_at,
        )
        .select_from(
            outbox.outerjoin(
                review_records, review_records.c.id == outbox.c.review_record_id
            ).outerjoin(decisions, decisions.c.id == outbox.c.decision_id)
        )
        .where(outbox.c.state.in_(FINAL_STATES), outbox.c.receipt_at.is_(None))
        .order_by(outbox.c.final_at)
        .limit(limit)
    )
    return list(connection.execute(query))


def _withheld_owed(connection: Any, limit: int) -> list[Any]:
    """Refused review records whose ``withheld`` receipt is not written, with the refusal."""
    query = (
        select(
            review_records.c.id,
            review_records.c.reference,
            review_records.c.to_lan,
            review_records.c.kind,
            review_records.c.pnr_enc,
            review_records.c.created_at,
            decisions.c.id.label("decision_id"),
            decisions.c.reviewer_hsa_id,
            decisions.c.reviewer_name,
            decisions.c.decided_at,
        )
        .select_from(
            review_records.join(
                decisions,
                and_(
                    decisions.c.record_id == review_records.c.id,
                    decisions.c.final == True,  # noqa: E712
                    decisions.c.outcome == "refuse",
                ),
            )
        )
        .where(review_records.c.state == REFUSED, review_records.c.receipt_at.is_(None))
        .order_by(decisions.c.decided_at)
        .limit(limit)
    )
    return list(connection.execute(query))


def write_region_receipts(
    hub: Hub, region: MemberRegion, backoff: Backoff, limit: int = 1000
) -> int:
    """Write the receipts region ``region`` is still owed (sent records' final states and
    ``withheld`` records); return how many were written.

    A drop that fails (or is backing off) stops this run for the region; the receipts are owed
    until a later run. A region whose key was destroyed gets none (they would name records the
    hub can no longer read); an ended region with its key still gets the outcomes it is owed.
    """
    lan = region.lan_code
    engine = hub.db.region(lan)
    with engine.connect() as connection:
        sent = _sent_owed(connection, limit)
        withheld = _withheld_owed(connection, limit)
    if not sent and not withheld:
        return 0
    try:
        cipher = region_cipher(hub, lan)
    except KeyDestroyed:
        log.warning("region %s: receipts skipped, the region's key is destroyed", lan)
        return 0
    written = 0
    with region_drop(hub, region, backoff) as session:
        if session.skipped:
            return 0
        drop = session.open()
        for row in sent:
            name = receipt_name(row.final_at, row.review_record_id or row.id, row.state)
            document = receipt_document(row, lan, masked_personnummer(cipher, row.pnr_enc))
            _write(drop, name, document)
            with engine.begin() as connection:
                connection.execute(
                    update(outbox)
                    .where(outbox.c.id == row.id, outbox.c.state == row.state)
                    .values(receipt_name=name, receipt_at=utcnow())
                )
            written += 1
        for row in withheld:
            name = receipt_name(row.decided_at, row.id, WITHHELD)
            document = withheld_document(row, lan, masked_personnummer(cipher, row.pnr_enc))
            _write(drop, name, document)
            with engine.begin() as connection:
                connection.execute(
                    update(review_records)
                    .where(review_records.c.id == row.id, review_records.c.state == REFUSED)
                    .values(receipt_name=name, receipt_at=utcnow())
                )
            written += 1
    if session.error is not None:
        log.warning("region %s: receipts wait, drop unavailable: %s", lan, session.error)
    return written


def _write(drop: Drop, name: str, document: dict[str, Any]) -> None:
    data = json.dumps(document, ensure_ascii=False, indent=2).encode()
    # False means the file is already there (a run that died before marking it): the receipt
    # exists, which is all that matters.
    drop.write_atomic(RECEIPTS, name, data + b"\n")


def write_receipts(hub: Hub, backoff: Backoff, lans: set[str] | None = None) -> int:
    """Write owed receipts of every region (or only ``lans``); return the number written."""
    with hub.db.hub.connect() as connection:
        members = list_regions(connection)
    total = 0
    for region in members:
        if lans is None or region.lan_code in lans:
            try:
                total += write_region_receipts(hub, region, backoff)
            except StoreMissing as exc:  # one region's missing store must not hold up the rest
                log.warning("region %s: receipts skipped: %s", region.lan_code, exc)
    return total
