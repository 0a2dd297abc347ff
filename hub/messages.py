"""A region's message store: receive an inbound call into it, and list or read what it holds.

Everything here takes the region from the registry (the router), never from request data, and
opens only that region's engine: region A's code path holds no handle on region B's store.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from lxml import etree
from sqlalchemy import Connection, insert, select

from hub.context import Hub
from hub.contract.model import CervixScreeningInformation
from hub.contract.names import PAYLOAD_TAG
from hub.contract.personnummer import mask
from hub.contract.validate import swedish_today, validate_request
from hub.db import read_once_more_if_lost
from hub.tables import access_log, messages
from hub.tenancy.keys import RegionCipher

log = logging.getLogger(__name__)


def region_cipher(hub: Hub, lan_code: str) -> RegionCipher:
    """The region's cipher; opens a hub connection only the first time in this process."""
    cipher = hub.keys.cached(lan_code)
    if cipher is None:
        cipher = read_once_more_if_lost(
            hub.db.hub, lambda connection: hub.keys.cipher(connection, lan_code)
        )
    return cipher


@dataclass(frozen=True)
class CallMeta:
    """What the transport tells about a call (no personal data)."""

    sender_hsaid: str | None = None
    original_consumer_hsaid: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class Answer:
    """The producer's answer (CONTRACT.md §3): OK / INFO / ERROR with a text for INFO and ERROR."""

    result_code: str
    result_text: str | None
    message_id: str | None = None
    lan_code: str | None = None
    duplicate: bool = False


def log_access(
    connection: Connection, actor: str, action: str, message_id: str | None, detail: str = ""
) -> None:
    """Write one line to a region's own access log (who did what to which message, and when)."""
    connection.execute(
        insert(access_log).values(
            at=datetime.now(UTC), actor=actor, action=action, message_id=message_id, detail=detail
        )
    )


def receive(
    hub: Hub,
    body_element: etree._Element,
    logical_address: str | None,
    raw_body: bytes,
    meta: CallMeta,
) -> Answer:
    """Validate, route and store one inbound ProcessCervixScreeningInformation call.

    ``body_element`` is the operation element as :func:`hub.contract.parse.parse_request` read it.

    ERROR answers store nothing in any region (the call counts as not received). A resend of the
    same content to the same region is stored once and gets the first answer again.
    """
    # A batch being written waits for this call while it is validated (hub.groupcommit).
    hub.inbound.announce()
    try:
        today = swedish_today()
        verdict = validate_request(body_element, logical_address, today=today, codes=hub.codes)
        route = hub.router.route(logical_address, today)
        if route.region is None or verdict.result_code == "ERROR" or verdict.information is None:
            texts = [t for t in (route.reason, verdict.result_text()) if t]
            return Answer("ERROR", "; ".join(texts) or "the request was refused")
        info_element = body_element.find(PAYLOAD_TAG)
        assert info_element is not None  # the XSD made sure it is there
        return _store(
            hub,
            route.region.lan_code,
            verdict.information,
            info_element,
            raw_body,
            verdict.result_code,
            verdict.result_text(),
            meta,
            logical_address or "",
        )
    finally:
        hub.inbound.withdraw()


def canonical_bytes(element: etree._Element) -> bytes:
    """The identity of a message's content, blind to prefixes, attribute order and indentation.

    A resend is the same message when its content is: a sender may write its namespaces with
    other prefixes (exclusive C14N, used before, keeps them), order attributes otherwise, indent
    or not. Every node in document order becomes ``[name, attributes, text, tail, children]``:
    the namespace-qualified name (``#comment`` or ``#pi`` for those), the attributes by qualified
    name, the text, the text after it, and how many child nodes follow it; in document order
    with child counts the list fixes the tree exactly, and as JSON no text can imitate
    structure. Whitespace-only text beside child elements, and after an element, is indentation
    and dropped; a leaf's text is its value and kept as it is. The tree is only read: parsed
    with ``remove_blank_text`` (as ``parse_request`` does) or not gives the same bytes.
    """
    nodes: list[tuple[Any, ...]] = []
    for node in element.iter():
        tag = node.tag
        if tag.__class__ is not str:
            tag = "#comment" if isinstance(node, etree._Comment) else "#pi"
        text, tail, children = node.text, node.tail, len(node)
        if text is not None and children and not text.strip():
            text = None
        if tail is not None and not tail.strip():
            tail = None
        attributes = node.items()  # a list; node.attrib would build a proxy for every node
        nodes.append((tag, sorted(attributes) if attributes else None, text, tail, children))
    return orjson.dumps(nodes)


def message_row(
    cipher: RegionCipher,
    information: CervixScreeningInformation,
    content: bytes,
    raw_body: bytes,
    *,
    message_id: str,
    received_at: datetime,
    logical_address: str,
    meta: CallMeta,
    result_code: str,
    result_text: str | None,
) -> dict[str, Any]:
    """The ``messages`` row of a received message: personal data sealed with the region's key.

    ``content`` is the payload's :func:`canonical_bytes`, whose keyed hash recognises a resend.

    Nothing is compressed: deflating the body and fields cost a tenth of the producer's CPU per
    call. The row (a few kB) stays inside the table on PostgreSQL all the same, as the table's
    ``toast_tuple_target`` allows (migration region0004, bench/inbound.py).
    """
    pnr = information.subject_of_care.person_id.extension or ""
    return {
        "id": message_id,
        "received_at": received_at,
        "logical_address": logical_address,
        "sender_hsaid": meta.sender_hsaid,
        "original_consumer_hsaid": meta.original_consumer_hsaid,
        "correlation_id": meta.correlation_id,
        "content_hash": cipher.keyed_hash(content),
        "pnr_hash": cipher.keyed_hash(pnr),
        "pnr_enc": cipher.seal(pnr.encode(), "pnr"),
        "body_enc": cipher.seal(raw_body, "body"),
        "fields_enc": cipher.seal(information.to_json(), "fields"),
        "kind": information.kind,
        "summary": information.summary(),
        "result_code": result_code,
        "result_text": result_text,
        "delivery_state": "pending",
        "delivery_attempts": 0,
    }


def _first_answer(hub: Hub, lan_code: str, content_hash: str) -> Any:
    """The stored message with this content hash (id, result code and text), or None."""
    query = select(messages.c.id, messages.c.result_code, messages.c.result_text).where(
        messages.c.content_hash == content_hash
    )
    return read_once_more_if_lost(
        hub.db.region(lan_code), lambda connection: connection.execute(query).first()
    )


def _store(
    hub: Hub,
    lan_code: str,
    information: CervixScreeningInformation,
    info_element: etree._Element,
    raw_body: bytes,
    result_code: str,
    result_text: str | None,
    meta: CallMeta,
    logical_address: str,
) -> Answer:
    cipher = region_cipher(hub, lan_code)
    message_id = str(uuid.uuid4())
    row = message_row(
        cipher,
        information,
        canonical_bytes(info_element),
        raw_body,
        message_id=message_id,
        received_at=datetime.now(UTC),
        logical_address=logical_address,
        meta=meta,
        result_code=result_code,
        result_text=result_text,
    )
    content_hash = row["content_hash"]
    # Committed together with the other calls in flight (hub.groupcommit); the message row itself
    # records who sent it and when, so receiving needs no access-log line.
    if not hub.inbound.insert(lan_code, row):
        # The unique content hash caught a resend (possibly a concurrent one): answer as before.
        first = _first_answer(hub, lan_code, content_hash)
        if first is None:
            raise RuntimeError("a stored message with this content hash vanished")
        log.info("region %s: resend of message %s answered again", lan_code, first.id)
        return Answer(first.result_code, first.result_text, first.id, lan_code, duplicate=True)
    # The log names the message, never the woman (not even masked). One line per message is for
    # debugging; at INFO the group commit logs counts per region once a minute, because a
    # line per call costs a tenth of the producer's CPU under load (bench/inbound.py).
    log.debug("region %s: stored message %s (%s)", lan_code, message_id, information.kind)
    return Answer(result_code, result_text, message_id, lan_code)


@dataclass(frozen=True)
class MessageView:
    """One stored message as an operator or the region sees it in a list: personnummer masked."""

    id: str
    received_at: datetime
    kind: str
    masked_pnr: str
    result_code: str
    delivery_state: str
    sender_hsaid: str | None
    correlation_id: str | None
    summary: dict[str, Any]


def list_messages(hub: Hub, lan_code: str, actor: str, limit: int = 100) -> list[MessageView]:
    """The newest messages of one region; the listing itself goes to that region's access log."""
    cipher = region_cipher(hub, lan_code)
    with hub.db.region(lan_code).begin() as connection:
        rows = connection.execute(
            select(messages).order_by(messages.c.received_at.desc()).limit(limit)
        ).all()
        log_access(connection, actor, "messages.listed", None, f"{len(rows)} rows")
    return [
        MessageView(
            id=row.id,
            received_at=row.received_at,
            kind=row.kind,
            masked_pnr=mask(cipher.open(row.pnr_enc, "pnr").decode()),
            result_code=row.result_code,
            delivery_state=row.delivery_state,
            sender_hsaid=row.sender_hsaid,
            correlation_id=row.correlation_id,
            summary=dict(row.summary or {}),
        )
        for row in rows
    ]


def read_body(hub: Hub, lan_code: str, message_id: str, actor: str) -> bytes | None:
    """The body of one message as received (decrypted), logged in the region's access log.

    None when the region has no such message, or retention has already emptied its body.
    """
    cipher = region_cipher(hub, lan_code)
    with hub.db.region(lan_code).begin() as connection:
        row = connection.execute(
            select(messages.c.body_enc).where(messages.c.id == message_id)
        ).first()
        if row is None or row.body_enc is None:
            return None
        log_access(connection, actor, "message.read", message_id)
    return cipher.open(row.body_enc, "body")
