"""A region's message store: the row a received message becomes, and storing it.

Personal data is sealed with the region's own key before it reaches the row; the content hash
(a keyed hash of :func:`hub.contract.canonical.canonical_bytes`) recognises a resend.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree
from sqlalchemy import select

from hub.clock import utcnow
from hub.context import Hub
from hub.contract.canonical import canonical_bytes
from hub.contract.model import CervixScreeningInformation
from hub.db import read_once_more_if_lost
from hub.db.region_tables import messages
from hub.inbound.groupcommit import RegionClosed
from hub.tenancy.access import region_cipher
from hub.tenancy.keys import KeyDestroyed, RegionCipher
from hub.tenancy.registry import get_region
from hub.tenancy.routing import ended_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallMeta:
    """What the transport tells about a call (no personal data)."""

    sender_hsaid: str | None = None
    original_consumer_hsaid: str | None = None
    correlation_id: str | None = None


class NotReceiving(Exception):
    """The region no longer receives (ended, or its key destroyed): the call is answered ERROR
    with this text and stored nowhere."""


@dataclass(frozen=True)
class Stored:
    """A message in the region's store: this call's, or the first of a resend's."""

    message_id: str
    result_code: str
    result_text: str | None
    duplicate: bool = False


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

    Nothing is compressed: ciphertext does not deflate, and deflating the clear text first cost
    more of the producer's CPU than it saved. The row (a few kB) stays inside the table on
    PostgreSQL all the same, as the table's ``toast_tuple_target`` allows (migration
    region0004).
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


def _live_cipher(hub: Hub, lan_code: str) -> RegionCipher:
    """The region's cipher, read now, for a region not ended: else :class:`NotReceiving`.

    The key is read first and the registry after it: an end committed in between is seen here,
    and one committed later changes the key's row, which the group commit's guard then refuses.
    """
    try:
        cipher = region_cipher(hub, lan_code)
    except KeyDestroyed:
        raise NotReceiving(ended_reason(lan_code)) from None
    region = read_once_more_if_lost(hub.db.hub, lambda connection: get_region(connection, lan_code))
    if region is None or region.ended_at is not None:
        hub.keys.forget(lan_code)
        raise NotReceiving(ended_reason(lan_code))
    return cipher


def store_message(
    hub: Hub,
    lan_code: str,
    information: CervixScreeningInformation,
    info_element: etree._Element,
    raw_body: bytes,
    result_code: str,
    result_text: str | None,
    meta: CallMeta,
    logical_address: str,
) -> Stored:
    """Seal and store one validated message in region ``lan_code``'s store; wait for the commit.

    A resend of content the region already holds is stored once: the first message is returned
    (``duplicate``), with the answer it got. Raises :class:`NotReceiving` when the region was
    ended or its key destroyed, here or in another process, however recently.
    """
    message_id = str(uuid.uuid4())
    content = canonical_bytes(info_element)
    received_at = utcnow()

    def sealed(cipher: RegionCipher) -> dict[str, Any]:
        return message_row(
            cipher,
            information,
            content,
            raw_body,
            message_id=message_id,
            received_at=received_at,
            logical_address=logical_address,
            meta=meta,
            result_code=result_code,
            result_text=result_text,
        )

    cipher = hub.keys.cached(lan_code) or _live_cipher(hub, lan_code)
    row = sealed(cipher)
    try:
        inserted = hub.inbound.insert(lan_code, row, key_ref=cipher.key_ref)
    except RegionClosed:
        # The key's row changed since this process cached it: another process ended the region
        # (destroyed its key, or wrapped it anew) or reinstated it with a new key. Nothing was
        # stored. Only a live region is worth sealing for again; the router forgets the region,
        # so that its next call is refused up front.
        hub.router.invalidate(lan_code)
        fresh = _live_cipher(hub, lan_code)
        if fresh.key_ref == cipher.key_ref:
            raise NotReceiving(ended_reason(lan_code)) from None
        row = sealed(fresh)
        try:
            inserted = hub.inbound.insert(lan_code, row, key_ref=fresh.key_ref)
        except RegionClosed:
            raise NotReceiving(ended_reason(lan_code)) from None
    content_hash = row["content_hash"]
    # Committed together with the other calls in flight (hub.inbound.groupcommit); the row itself
    # records who sent it and when, so receiving needs no access-log line.
    if not inserted:
        # The unique content hash caught a resend (possibly a concurrent one): answer as before.
        first = _first_answer(hub, lan_code, content_hash)
        if first is None:
            raise RuntimeError("a stored message with this content hash vanished")
        log.info("region %s: resend of message %s answered again", lan_code, first.id)
        return Stored(first.id, first.result_code, first.result_text, duplicate=True)
    # The log names the message, never the woman (not even masked). One line per message is for
    # debugging; at INFO the group commit logs counts per region once a minute, because a
    # line per call is a cost every call pays under load.
    log.debug("region %s: stored message %s (%s)", lan_code, message_id, information.kind)
    return Stored(message_id, result_code, result_text)
