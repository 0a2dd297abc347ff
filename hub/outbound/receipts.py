"""Receipts: each record's final state goes back to the sending region's ``receipts/`` folder.

One JSON file per final state, named ``<UTC time>_<record id>_<state>.json`` (e.g.
``20261122T101501Z_6f1c…_delivered.json``), written atomically (temporary dot-name, then rename)
and never overwritten. A record resent by an operator gets a second receipt for its new final
state. The receipt identifies the woman only by a masked personnummer and the region's own
``reference``: the region matches receipts to its records by ``record_id`` or ``reference``.

Format (``receipt_version`` 1)::

    {
      "receipt_version": 1,
      "record_id": "6f1c…",            # the outbox id enqueue() returned
      "reference": "extract-2026-11-22.csv:17" | null,
      "correlation_id": "…",           # x-skltp-correlation-id sent on every attempt
      "from_lan": "14", "to_lan": "01",
      "kind": "move" | "sample" | "treatment" | "no_information",
      "subject": "19620120-****",     # masked personnummer
      "state": "delivered" | "refused" | "failed",
      "result_code": "OK" | "INFO" | "ERROR" | null,
      "result_text": "…" | null,       # the receiver's INFO/ERROR text (masked)
      "fault_code": "VP004" | "TIMEOUT" | … | null,   # failed: the last reason
      "last_error": "…" | null,
      "attempts": 1,
      "approved_by": "reviewer@14",
      "queued_at": "2026-11-22T10:15:00.123456+00:00",
      "final_at": "2026-11-22T10:15:01.456789+00:00"
    }
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from hub.clock import as_utc, utcnow
from hub.context import Hub
from hub.db import StoreMissing
from hub.db.region_tables import outbox
from hub.drops.base import RECEIPTS
from hub.drops.session import region_drop
from hub.drops.state import Backoff
from hub.outbound.states import FINAL_STATES
from hub.tenancy.access import region_cipher
from hub.tenancy.keys import KeyDestroyed, masked_personnummer
from hub.tenancy.registry import MemberRegion, list_regions

log = logging.getLogger(__name__)

RECEIPT_VERSION = 1


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value is not None else None


def receipt_name(row: Any) -> str:
    """``<final time>_<record id>_<state>.json``: unique per final state, sortable by time."""
    final_at = as_utc(row.final_at) or utcnow()
    return f"{final_at:%Y%m%dT%H%M%SZ}_{row.id}_{row.state}.json"


def receipt_document(row: Any, lan: str, subject: str) -> dict[str, Any]:
    """The receipt of one outbox row (see the module docstring for the format)."""
    return {
        "receipt_version": RECEIPT_VERSION,
        "record_id": row.id,
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
        "approved_by": row.created_by,
        "queued_at": _iso(row.created_at),
        "final_at": _iso(row.final_at),
    }


def write_region_receipts(
    hub: Hub, region: MemberRegion, backoff: Backoff, limit: int = 1000
) -> int:
    """Write the receipts region ``region`` is still owed; return how many were written.

    A drop that fails (or is backing off) stops this run for the region; the receipts are owed
    until a later run. A region whose key was destroyed gets none (they would name records the
    hub can no longer read); an ended region with its key still gets the outcomes it is owed.
    """
    lan = region.lan_code
    engine = hub.db.region(lan)
    with engine.connect() as connection:
        rows = connection.execute(
            select(outbox)
            .where(outbox.c.state.in_(FINAL_STATES), outbox.c.receipt_at.is_(None))
            .order_by(outbox.c.final_at)
            .limit(limit)
        ).all()
    if not rows:
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
        for row in rows:
            name = receipt_name(row)
            subject = masked_personnummer(cipher, row.pnr_enc)
            data = json.dumps(
                receipt_document(row, lan, subject), ensure_ascii=False, indent=2
            ).encode()
            # False means the file is already there (a run that died before marking it): the
            # receipt exists, which is all that matters.
            drop.write_atomic(RECEIPTS, name, data + b"\n")
            with engine.begin() as connection:
                connection.execute(
                    update(outbox)
                    .where(outbox.c.id == row.id, outbox.c.state == row.state)
                    .values(receipt_name=name, receipt_at=utcnow())
                )
            written += 1
    if session.error is not None:
        log.warning("region %s: receipts wait, drop unavailable: %s", lan, session.error)
    return written


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
