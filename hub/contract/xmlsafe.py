"""One way to parse untrusted XML: no DTD, no entities, no network, bounded size."""

from lxml import etree

from hub.contract.names import MAX_PAYLOAD_BYTES


class UnsafeXml(ValueError):
    """The bytes are not well-formed XML we are willing to read; the text says why, without data."""


def safe_parser(*, remove_blank_text: bool = False) -> etree.XMLParser:
    """Return a parser that never loads a DTD, resolves an entity or touches the network.

    ``remove_blank_text`` drops whitespace-only text between elements (indentation), as libxml2
    does for element-only content: a leaf's own whitespace and mixed content are kept.
    A fresh parser per call: lxml parsers are not safe to share between threads.
    """
    return etree.XMLParser(
        remove_blank_text=remove_blank_text,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def parse_untrusted(
    data: bytes, max_bytes: int = MAX_PAYLOAD_BYTES, *, remove_blank_text: bool = False
) -> etree._Element:
    """Parse ``data`` as untrusted XML and return its root element.

    Raises :class:`UnsafeXml` for oversize input, a DOCTYPE (DTDs and entities are refused outright,
    not merely left unexpanded) or malformed XML.
    """
    if len(data) > max_bytes:
        raise UnsafeXml(f"body is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        root = etree.fromstring(data, safe_parser(remove_blank_text=remove_blank_text))
    except etree.XMLSyntaxError as exc:
        raise UnsafeXml(f"malformed XML: {exc.msg}") from None
    if root.getroottree().docinfo.doctype:
        raise UnsafeXml("a DOCTYPE (DTD) is not allowed")
    return root
