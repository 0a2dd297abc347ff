"""The identity of a message's content: the same bytes however a sender writes the same XML."""

from __future__ import annotations

from typing import Any

import orjson
from lxml import etree

# lxml reads each attribute's value by a search along the element's attribute list
# (xmlGetNsProp), so node.items() costs the square of the attribute count. An XPath over the
# attribute axis walks that list once and yields each value with its qualified name.
_ATTRIBUTES = etree.XPath("@*")
# Below this many attributes items() is the cheaper of the two; the square stays negligible.
_FEW_ATTRIBUTES = 8


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

    The cost is linear in the size of the tree, however many attributes an element has.
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
        # keys() is a list of names, one pass (node.attrib would build a proxy for every node).
        names = node.keys()
        attributes: list[tuple[str, str]] | None = None
        if len(names) > _FEW_ATTRIBUTES:
            attributes = sorted((a.attrname, str(a)) for a in _ATTRIBUTES(node))
        elif names:
            attributes = sorted(node.items())
        nodes.append((tag, attributes, text, tail, children))
    return orjson.dumps(nodes)
