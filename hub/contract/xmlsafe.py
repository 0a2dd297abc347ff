"""One way to parse untrusted XML: no DTD, no entities, no network, bounded size and shape.

Error texts are fixed (with at most a number of ours or a line number in them): libxml2's own
messages quote the input, and these texts end up in faults, answers and logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from hub.contract.names import MAX_PAYLOAD_BYTES

# How much of a document the bounded parser reads before it looks at what was read: a document
# over a limit is refused within one such piece, not after all of it was built.
_PIECE_BYTES = 64 * 1024


class UnsafeXml(ValueError):
    """The bytes are not well-formed XML we are willing to read; the text says why, without data."""


class XmlTooComplex(UnsafeXml):
    """Well-formed, perhaps, but over one of the :class:`XmlLimits`; the text names the limit."""


@dataclass(frozen=True)
class XmlLimits:
    """Bounds on a document's shape that keep every later step linear in the document's size.

    The byte cap alone does not: 5 MB hold hundreds of thousands of attributes on one element or
    namespace declarations on one, and libxml2 and lxml handle those with work that grows with
    the square of their number (reading attribute values, copying in-scope namespaces for schema
    validation). Names are bounded because a schema error's path repeats every ancestor's name,
    and a namespace because every element in it carries it in its tag.
    """

    #: Elements in the document.
    elements: int
    #: Nesting depth of elements (the root is depth 1).
    depth: int
    #: Attributes on one element (namespace declarations not counted).
    attributes: int
    #: Attributes in the document: each can be a schema error of its own.
    attributes_total: int
    #: Namespace declarations on one element.
    namespaces_per_element: int
    #: Namespace declarations in the document.
    namespaces: int
    #: Characters in a prefix, or in the local name of an element not in ``known``.
    name_chars: int
    #: Characters in a namespace name (URI).
    namespace_chars: int
    #: Elements whose qualified name is not in ``known`` (extensions, or mistakes), and every
    #: element inside one (a schema validates those laxly: each can be an error of its own).
    unknown_elements: int
    #: Qualified names (``{namespace}local``) the document's vocabulary defines.
    known: frozenset[str] = field(default_factory=frozenset)


def safe_parser(*, remove_blank_text: bool = False, keep_markup: bool = False) -> etree.XMLParser:
    """Return a parser that never loads a DTD, resolves an entity or touches the network.

    ``remove_blank_text`` drops whitespace-only text between elements (indentation), as libxml2
    does for element-only content: a leaf's own whitespace and mixed content are kept.
    Comments and processing instructions are dropped (the text around one joined) unless
    ``keep_markup``. A fresh parser per call: lxml parsers are not safe to share between threads.
    """
    return etree.XMLParser(**_parser_options(remove_blank_text, keep_markup))


def _parser_options(remove_blank_text: bool, keep_markup: bool = False) -> dict[str, Any]:
    return {
        "remove_blank_text": remove_blank_text,
        "resolve_entities": False,
        "no_network": True,
        "load_dtd": False,
        "dtd_validation": False,
        "huge_tree": False,
        "remove_comments": not keep_markup,
        "remove_pis": not keep_markup,
        "collect_ids": False,
    }


def _syntax_error(exc: etree.XMLSyntaxError) -> UnsafeXml:
    # exc.msg quotes the input (names, text); only where it went wrong is kept.
    line = exc.lineno if isinstance(exc.lineno, int) and exc.lineno > 0 else None
    return UnsafeXml("malformed XML" + (f" (line {line})" if line else ""))


def parse_untrusted(
    data: bytes,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    *,
    remove_blank_text: bool = False,
    limits: XmlLimits | None = None,
    keep_markup: bool = False,
) -> etree._Element:
    """Parse ``data`` as untrusted XML and return its root element.

    Raises :class:`UnsafeXml` for oversize input, a DOCTYPE (DTDs and entities are refused outright,
    not merely left unexpanded) or malformed XML, and :class:`XmlTooComplex` for a document over
    ``limits`` (checked while it is parsed, before anything else reads the tree). Comments and
    processing instructions are kept with ``keep_markup`` (not with ``limits``).
    """
    if len(data) > max_bytes:
        raise UnsafeXml(f"body is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        if limits is None:
            parser = safe_parser(remove_blank_text=remove_blank_text, keep_markup=keep_markup)
            root = etree.fromstring(data, parser)
        else:
            root = _parse_bounded(data, limits, remove_blank_text)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc) from None
    if root.getroottree().docinfo.doctype:
        raise UnsafeXml("a DOCTYPE (DTD) is not allowed")
    return root


def _too_complex(what: str, limit: int) -> XmlTooComplex:
    return XmlTooComplex(f"the document has {what} (the limit is {limit})")


def _parse_bounded(data: bytes, limits: XmlLimits, remove_blank_text: bool) -> etree._Element:
    """Parse piece by piece, counting from the parser's events; stop at the first limit passed.

    One pass, in the order the parser meets things: a namespace declaration is counted before
    the element that carries it is looked at, so no tag with an oversized namespace is ever built.
    The counts cost a few operations per element (this runs on every call): the limits are read
    into locals, and an element that passes every check takes one comparison of each kind.
    """
    parser = etree.XMLPullParser(
        events=("start", "end", "start-ns"), **_parser_options(remove_blank_text)
    )
    known = limits.known
    max_elements, max_depth, max_attributes = limits.elements, limits.depth, limits.attributes
    max_declared_here, max_declared = limits.namespaces_per_element, limits.namespaces
    elements = depth = unknown = declared = declared_here = attributes = 0
    extension_at = 0  # the depth of the unknown element we are inside, 0 when in none
    for offset in range(0, len(data), _PIECE_BYTES):
        parser.feed(data[offset : offset + _PIECE_BYTES])
        for event, item in parser.read_events():
            if event == "start":
                elements += 1
                depth += 1
                declared_here = 0
                if elements > max_elements or depth > max_depth:
                    _refuse_element(limits, elements, depth)
                tag = item.tag
                if extension_at or tag not in known:
                    unknown += 1
                    _check_unknown(limits, tag, unknown, known)
                    if not extension_at:
                        extension_at = depth
                names = item.keys()
                if names:
                    attributes += len(names)
                    if len(names) > max_attributes or attributes > limits.attributes_total:
                        _refuse_attributes(limits, len(names))
            elif event == "end":
                if depth == extension_at:
                    extension_at = 0
                depth -= 1
            else:  # start-ns: (prefix, namespace) of a declaration on the element that follows
                declared += 1
                declared_here += 1
                if declared_here > max_declared_here or declared > max_declared:
                    _refuse_declarations(limits, declared_here)
                _check_declaration(limits, *item)
    root: etree._Element = parser.close()
    return root


def _refuse_element(limits: XmlLimits, elements: int, depth: int) -> None:
    if elements > limits.elements:
        raise _too_complex("too many elements", limits.elements)
    raise _too_complex("elements nested too deeply", limits.depth)


def _check_unknown(limits: XmlLimits, tag: str, unknown: int, known: frozenset[str]) -> None:
    if unknown > limits.unknown_elements:
        raise _too_complex(
            "too many elements in extensions or not in the contract", limits.unknown_elements
        )
    if tag not in known and len(tag) - tag.find("}") - 1 > limits.name_chars:
        raise _too_complex("an element name that is too long", limits.name_chars)


def _refuse_attributes(limits: XmlLimits, here: int) -> None:
    if here > limits.attributes:
        raise _too_complex("too many attributes on one element", limits.attributes)
    raise _too_complex("too many attributes", limits.attributes_total)


def _refuse_declarations(limits: XmlLimits, here: int) -> None:
    if here > limits.namespaces_per_element:
        raise _too_complex(
            "too many namespace declarations on one element", limits.namespaces_per_element
        )
    raise _too_complex("too many namespace declarations", limits.namespaces)


def _check_declaration(limits: XmlLimits, prefix: str, namespace: str) -> None:
    if len(prefix) > limits.name_chars:
        raise _too_complex("a namespace prefix that is too long", limits.name_chars)
    if len(namespace) > limits.namespace_chars:
        raise _too_complex("a namespace name that is too long", limits.namespace_chars)
