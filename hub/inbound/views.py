"""What a region (or an operator) sees of its received messages: lists, one message, downloads.

Lists are metadata (masked personnummer) and write one access-log entry each; viewing or
downloading one message is a view of a woman's data and writes one entry naming her (keyed hash
and masked personnummer). A message whose body retention has emptied shows its metadata only.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import select

from hub.audit import Action, record_access
from hub.clock import as_utc
from hub.db.region_tables import messages
from hub.delivery.files import MessageMeta, ReceivedFiles, render_received
from hub.tenancy.access import NotFound, Permission, RegionScope
from hub.tenancy.keys import masked_personnummer

DownloadFormat = Literal["xml", "json", "csv"]
FORMATS: Final = ("xml", "json", "csv")


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


def _view(scope: RegionScope, row: Any) -> MessageView:
    return MessageView(
        id=row.id,
        received_at=as_utc(row.received_at),
        kind=row.kind,
        masked_pnr=masked_personnummer(scope.cipher, row.pnr_enc),
        result_code=row.result_code,
        delivery_state=row.delivery_state,
        sender_hsaid=row.sender_hsaid,
        correlation_id=row.correlation_id,
        summary=dict(row.summary or {}),
    )


def list_messages(
    scope: RegionScope, limit: int = 100, *, before: datetime | None = None
) -> list[MessageView]:
    """The newest messages of the scope's region (older than ``before``, for the next page);
    the listing goes to its access log."""
    scope.require(Permission.READ_METADATA)
    query = select(messages).order_by(messages.c.received_at.desc(), messages.c.id).limit(limit)
    if before is not None:
        query = query.where(messages.c.received_at < before)
    with scope.engine.begin() as connection:
        rows = connection.execute(query).all()
        record_access(
            connection,
            scope.actor,
            Action.MESSAGES_LISTED,
            resource="received",
            detail=f"{len(rows)} rows",
        )
    return [_view(scope, row) for row in rows]


@dataclass(frozen=True)
class ReceivedMessage:
    """One received message as the region reads it: metadata and, unless purged, its content."""

    view: MessageView
    #: The personnummer in clear, or None when retention emptied the body.
    personnummer: str | None
    #: The information as JSON (the sidecar's ``information``), or None when purged.
    information: dict[str, Any] | None
    #: Both files as they were delivered to the drop, or None when purged.
    files: ReceivedFiles | None


def _meta(row: Any) -> MessageMeta:
    return MessageMeta(
        id=row.id,
        received_at=row.received_at,
        logical_address=row.logical_address,
        kind=row.kind,
        result_code=row.result_code,
        result_text=row.result_text,
        sender_hsaid=row.sender_hsaid,
        original_consumer_hsaid=row.original_consumer_hsaid,
        correlation_id=row.correlation_id,
    )


def _open(scope: RegionScope, message_id: str, action: Action, detail: str) -> ReceivedMessage:
    scope.require(Permission.READ_CONTENT)
    with scope.engine.begin() as connection:
        row = connection.execute(select(messages).where(messages.c.id == message_id)).first()
        if row is None:
            raise NotFound(f"region {scope.lan} has no message {message_id}")
        view = _view(scope, row)
        record_access(
            connection,
            scope.actor,
            action,
            message_id=message_id,
            pnr_hash=row.pnr_hash,
            masked_pnr=view.masked_pnr,
            detail=detail,
        )
    if row.body_enc is None:
        return ReceivedMessage(view, None, None, None)
    files = render_received(scope.cipher.open(row.body_enc, "body"), _meta(row))
    sidecar = _sidecar(files)
    return ReceivedMessage(view, sidecar["personnummer"], sidecar["information"], files)


def _sidecar(files: ReceivedFiles) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(files.json)
    return data


def open_received(scope: RegionScope, message_id: str) -> ReceivedMessage:
    """One received message with its content; the view is written to the region's access log.

    Raises :class:`NotFound` for a message the region does not have (another region's too).
    """
    return _open(scope, message_id, Action.RECEIVED_VIEWED, "viewed")


@dataclass(frozen=True)
class Download:
    """A file to hand to the reader."""

    name: str
    media_type: str
    data: bytes


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(inner, f"{prefix}.{key}" if prefix else key, out)
    elif isinstance(value, list):
        for index, inner in enumerate(value, 1):
            _flatten(inner, f"{prefix}.{index}", out)
    else:
        out[prefix] = "" if value is None else str(value)


def download_received(scope: RegionScope, message_id: str, fmt: DownloadFormat) -> Download:
    """One received message as a file: the XML or JSON the drop got, or a one-row CSV.

    The CSV has one column per field, named by its path in the contract
    (``subjectOfCare.personId.extension``, ``followUpGroups.1.type.code``), plus the message's
    metadata. The download is written to the region's access log. Raises :class:`NotFound`, and
    ValueError for a message whose content retention has already emptied.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    message = _open(scope, message_id, Action.RECEIVED_DOWNLOADED, fmt)
    if message.files is None or message.information is None:
        raise ValueError("the message's content was emptied by retention; only metadata is kept")
    files = message.files
    if fmt == "xml":
        return Download(files.xml_name, "application/xml", files.xml)
    if fmt == "json":
        return Download(files.json_name, "application/json", files.json)
    row = {
        "messageId": message.view.id,
        "receivedAt": message.view.received_at.isoformat(),
        "kind": message.view.kind,
        "resultCode": message.view.result_code,
    }
    _flatten(message.information, "", row)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(row), delimiter=";", lineterminator="\r\n")
    writer.writeheader()
    writer.writerow(row)
    name = files.json_name.removesuffix(".json") + ".csv"
    return Download(name, "text/csv; charset=utf-8", text.getvalue().encode("utf-8"))


def read_body(scope: RegionScope, message_id: str) -> bytes | None:
    """The body of one message as received (decrypted), logged in the region's access log.

    None when the region has no such message, or retention has already emptied its body.
    """
    scope.require(Permission.READ_CONTENT)
    with scope.engine.begin() as connection:
        row = connection.execute(
            select(messages.c.body_enc).where(messages.c.id == message_id)
        ).first()
        if row is None or row.body_enc is None:
            return None
        record_access(connection, scope.actor, Action.MESSAGE_READ, message_id=message_id)
    return scope.cipher.open(row.body_enc, "body")
