"""Put a finally approved review record into its region's outbox, in the decision's transaction.

The request envelope is built once (zeep, from ``wsdl/``) and stored sealed with the region's
key; it is sent unchanged on every attempt. The outbox row carries the decision it is sent on
(id, record, destination, content hash, outcome, final), which the database checks against the
decisions table, and the envelope must carry exactly the approved content to the approved
destination (:func:`matches_its_approval`): checked here, and again by the sender before every
call.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from lxml import etree  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import Connection

from hub.clock import utcnow
from hub.contract.canonical import canonical_bytes
from hub.contract.names import OPERATION_TAG, PAYLOAD_TAG
from hub.contract.parse import MalformedRequest, parse_request
from hub.contract.xmlsafe import parse_untrusted
from hub.db.region_tables import outbox
from hub.outbound.client import build_envelope
from hub.outbound.states import QUEUED, OutboxError
from hub.review.content import content_sha256
from hub.tenancy.access import RegionScope

log = logging.getLogger(__name__)


def approved_payload(scope: RegionScope, record: Any) -> etree._Element:
    """The ``cervixScreeningInformation`` element of a review record, as it was stored."""
    return parse_untrusted(scope.cipher.open(record.content_enc, "review-content"))


def matches_its_approval(envelope: bytes, decision_sha256: str | None, to_lan: str) -> bool:
    """Whether ``envelope`` discloses exactly what its approval covers, to whom it covers.

    The approval names a content hash and a destination (the outbox row's ``to_lan``, which the
    database ties to the decision's). The envelope must carry one operation holding one
    ``cervixScreeningInformation`` whose canonical SHA-256 is the approval's, no other such
    element anywhere, and be addressed (``LogicalAddress``) to that destination and no other.
    """
    if decision_sha256 is None:
        return False
    try:
        request = parse_request(envelope)
    except MalformedRequest:
        return False
    if request.logical_address != to_lan:
        return False
    operation = request.body_element
    body = operation.getparent()
    if operation.tag != OPERATION_TAG or body is None or len(body) != 1 or len(operation) != 1:
        return False
    payload = operation[0]
    if payload.tag != PAYLOAD_TAG:
        return False
    if sum(1 for _ in request.envelope.iter(PAYLOAD_TAG)) != 1:
        return False
    return content_sha256(payload) == decision_sha256


def queue_approved(
    scope: RegionScope, connection: Connection, record: Any, decision_id: str, approved_by: str
) -> str:
    """Queue a review record on its final approval ``decision_id``; return the outbox id.

    ``connection`` is the decision's transaction: the record is queued with the decision or not
    at all.
    """
    cipher = scope.cipher
    payload = approved_payload(scope, record)
    envelope = build_envelope(record.to_lan, payload)
    # zeep read the payload through the schema; make sure it carries exactly what was approved,
    # to the approved destination: the check the sender repeats before every call.
    if not matches_its_approval(envelope, record.content_sha256, record.to_lan):
        raise OutboxError("internal: the request envelope does not carry the approved content")
    now = utcnow()
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "created_at": now,
        "updated_at": now,
        "created_by": approved_by,
        "to_lan": record.to_lan,
        "state": QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "correlation_id": str(uuid.uuid4()),
        "content_hash": cipher.keyed_hash(canonical_bytes(payload)),
        "pnr_hash": record.pnr_hash,
        "pnr_enc": record.pnr_enc,
        "request_enc": cipher.seal(envelope, "outbox-request"),
        "kind": record.kind,
        "summary": dict(record.summary or {}),
        "reference": record.reference,
        "check_text": record.check_text,
        "review_record_id": record.id,
        "decision_id": decision_id,
        "decision_sha256": record.content_sha256,
        "decision_outcome": "approve",
        "decision_final": True,
    }
    connection.execute(outbox.insert().values(**row))
    log.info("region %s: record %s queued for %s", scope.lan, row["id"], record.to_lan)
    return str(row["id"])
