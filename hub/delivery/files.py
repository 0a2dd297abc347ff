"""The files a region finds in ``received/``: one XML file and one JSON sidecar per message.

Names (UTC time the hub received the call, then the hub's message id)::

    received/20250301T101500Z_6f1c2a9e-3b7d-4c1e-9a55-0d2f1e8b7c44.xml
    received/20250301T101500Z_6f1c2a9e-3b7d-4c1e-9a55-0d2f1e8b7c44.json

Both names are a pure function of the stored message, so a delivery repeated after a crash aims
at the same names and the drop refuses to write them again (``Drop.write_atomic``). Names sort
by arrival. The XML file is written first and the JSON sidecar second: a region that imports by
the sidecar always finds its XML file complete beside it.

The XML file is the ``cervixScreeningInformation`` element exactly as the sender wrote it
(extension elements, whitespace and text included), UTF-8, with an XML declaration, every
namespace declaration that was in scope in the envelope repeated on its root element (so it
stands alone), and nothing else. Comments are dropped (the inbound parser never keeps them).

The sidecar (format ``agenthub.received/1``, documented in ``docs/drops.md``) carries the same
information as plain JSON with the contract's element names, plus the message's metadata and the
SHA-256 of the XML file's bytes, so a call-up system can import it without an XML toolchain.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from hub.clock import as_utc
from hub.contract.names import CORE_NS, OPERATION, PAYLOAD_TAG, RESPONDER_NS, SOAP11_ENV_NS
from hub.contract.xmlsafe import safe_parser

FORMAT = "agenthub.received/1"
_INFO_PATH = f"{{{SOAP11_ENV_NS}}}Body/{{{RESPONDER_NS}}}{OPERATION}/{PAYLOAD_TAG}"
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
NAME_RE = re.compile(
    r"^(?P<time>[0-9]{8}T[0-9]{6}Z)_(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
    r"[0-9a-f]{12})\.(?P<ext>xml|json)$"
)


class ReceivedFileError(ValueError):
    """The stored body does not hold a readable cervixScreeningInformation (no data in text)."""


@dataclass(frozen=True)
class MessageMeta:
    """What the hub knows about a stored message besides its body (no personal data)."""

    id: str
    received_at: datetime
    logical_address: str
    kind: str
    result_code: str
    result_text: str | None = None
    sender_hsaid: str | None = None
    original_consumer_hsaid: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class ReceivedFiles:
    """The two files of one message, ready to write (XML first)."""

    xml_name: str
    xml: bytes
    json_name: str
    json: bytes


def received_stem(message_id: str, received_at: datetime) -> str:
    """The common part of both file names: ``<YYYYMMDDTHHMMSSZ>_<message id>``."""
    return f"{as_utc(received_at):%Y%m%dT%H%M%SZ}_{message_id}"


def message_id_of(name: str) -> str | None:
    """The message id in a received file name, or None if the name is not one of ours.

    This is how a region (or a test) detects a duplicate: two files, one message id.
    """
    match = NAME_RE.fullmatch(name)
    return None if match is None else match.group("id")


_local = threading.local()


def _parser() -> etree.XMLParser:
    # safe_parser()'s settings, one parser per thread: building a parser costs more than parsing
    # a message, and lxml parsers must not be shared between threads.
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = safe_parser()
        _local.parser = parser
    return parser


def information_element(body: bytes) -> etree._Element:
    """The ``cervixScreeningInformation`` element inside a stored request envelope."""
    try:
        envelope = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError:
        raise ReceivedFileError("the stored body is not well-formed XML") from None
    if envelope.getroottree().docinfo.doctype:
        raise ReceivedFileError("the stored body has a DOCTYPE")
    element = envelope.find(_INFO_PATH)
    if element is None:
        raise ReceivedFileError("the stored body holds no cervixScreeningInformation")
    return element


def standalone_xml(element: etree._Element) -> bytes:
    """The element as a UTF-8 document of its own, in-scope namespaces declared on its root."""
    # Serialising a sub-element makes libxml2 declare every namespace in scope on it — those the
    # content needs and any the sender declared higher up, which costs nothing and keeps
    # QName-valued content (xsi:type="p:T") in extension elements resolvable.
    data: bytes = etree.tostring(element, encoding="UTF-8", xml_declaration=False, with_tail=False)
    return _XML_DECLARATION + data + b"\n"


# Elements that may repeat in the contract (docs/contract.md): always JSON arrays.
LIST_ELEMENTS = frozenset({"followUpGroups", "HPVstatusList"})
_CORE = f"{{{CORE_NS}}}"


def element_json(element: etree._Element) -> dict[str, Any]:
    """The children of a payload element as JSON, keyed by the contract's element names.

    An element with children becomes an object, a leaf its text (a string, exactly as sent);
    ``followUpGroups`` and ``HPVstatusList`` become arrays; an optional element that was not sent
    is not a key. Extension elements from other namespaces (``##other``) are only in the XML.
    """
    out: dict[str, Any] = {}
    for child in element:
        tag = child.tag
        if not isinstance(tag, str) or not tag.startswith(_CORE):
            continue
        name = tag[len(_CORE) :]
        value: Any = element_json(child) if len(child) else (child.text or "")
        if name in LIST_ELEMENTS:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def information_json(element: etree._Element) -> dict[str, Any]:
    """The ``information`` object of a sidecar: :func:`element_json` plus empty top-level lists."""
    out = element_json(element)
    out.setdefault("followUpGroups", [])
    return out


def _personnummer(information: dict[str, Any]) -> str | None:
    try:
        value = information["subjectOfCare"]["personId"]["extension"]
    except (KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def render_received(body: bytes, meta: MessageMeta) -> ReceivedFiles:
    """Both files of one stored message, from its decrypted request body."""
    element = information_element(body)
    xml = standalone_xml(element)
    information = information_json(element)
    personnummer = _personnummer(information)
    if personnummer is None or "sendingRegion" not in information:
        raise ReceivedFileError("the stored cervixScreeningInformation is incomplete")
    stem = received_stem(meta.id, meta.received_at)
    xml_name = f"{stem}.xml"
    sidecar = {
        "format": FORMAT,
        "messageId": meta.id,
        "receivedAt": as_utc(meta.received_at).isoformat(),
        "xmlFile": xml_name,
        "xmlSha256": hashlib.sha256(xml).hexdigest(),
        "xmlBytes": len(xml),
        "logicalAddress": meta.logical_address,
        "senderHsaId": meta.sender_hsaid,
        "originalConsumerHsaId": meta.original_consumer_hsaid,
        "correlationId": meta.correlation_id,
        "resultCode": meta.result_code,
        "resultText": meta.result_text,
        "kind": meta.kind,
        "personnummer": personnummer,
        "information": information,
    }
    # One compact line: indenting would force the json module's pure-Python encoder (~10x slower).
    data = json.dumps(sidecar, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
    return ReceivedFiles(xml_name=xml_name, xml=xml, json_name=f"{stem}.json", json=data)
