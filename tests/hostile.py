"""Hostile requests within the 5 MB cap: shapes that make naive XML handling superlinear.

Each builder returns a whole SOAP request for region 14 about ``pnr``: the largest of its shape
the cap lets through (tests/test_producer.py), or one that puts a given text where an error
message would quote it (tests/test_contract_validate.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from hub.contract.samples import sample_information
from hub.contract.serialise import build_request_envelope

CAP = 5 * 1024 * 1024
_END = b"</tjsr:cervixScreeningInformation>"
_XSI = b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
_XS = b'xmlns:xs="http://www.w3.org/2001/XMLSchema"'


def valid(pnr: str, scenario: str = "treatment") -> bytes:
    """A valid request for region 14."""
    info = sample_information(scenario, pnr=pnr, sending_lan="05", today=date.today())  # type: ignore[arg-type]
    return build_request_envelope("14", info)


def _fill(base: bytes, unit: Callable[[int], bytes], room: int = 512) -> bytes:
    """As many units as fit with ``base`` (and ``room`` to spare) under the cap."""
    parts: list[bytes] = []
    size = len(base) + room
    i = 0
    while True:
        part = unit(i)
        if size + len(part) > CAP:
            return b"".join(parts)
        parts.append(part)
        size += len(part)
        i += 1


def _extension(base: bytes, content: bytes) -> bytes:
    return base.replace(_END, content + _END)


def attributes(pnr: str) -> bytes:
    """One extension element with as many attributes as fit."""
    base = valid(pnr)
    attrs = _fill(base, lambda i: b' a%d="x"' % i)
    return _extension(base, b'<x:n xmlns:x="urn:x"' + attrs + b"/>")


def envelope_namespaces(pnr: str) -> bytes:
    """As many namespace declarations on the Envelope as fit."""
    base = valid(pnr)
    decls = _fill(base, lambda i: b' xmlns:p%d="urn:p%d"' % (i, i))
    return base.replace(b"<soap:Envelope ", b"<soap:Envelope" + decls + b" ", 1)


def spread_namespaces(pnr: str) -> bytes:
    """Many extension elements, each with its own namespace declarations."""
    base = valid(pnr)
    elements = _fill(base, lambda i: b'<p%d:e xmlns:p%d="urn:p%d"/>' % (i, i, i))
    return _extension(base, elements)


def deep(pnr: str) -> bytes:
    """Extension elements nested as deep as libxml2 allows."""
    return _extension(valid(pnr), b'<x:e xmlns:x="urn:x">' + b"<x:e>" * 240 + b"</x:e>" * 241)


def tiny_elements(pnr: str) -> bytes:
    """As many empty extension elements as fit."""
    base = valid(pnr)
    return _extension(base, b'<x:n xmlns:x="urn:x">' + _fill(base, lambda i: b"<x:e/>") + b"</x:n>")


def long_attribute_values(pnr: str, count: int = 32) -> bytes:
    """One extension element with ``count`` attributes whose values share the cap."""
    base = valid(pnr)
    size = (CAP - len(base) - 2048) // count
    attrs = b"".join(b' a%d="%s"' % (i, b"v" * size) for i in range(count))
    return _extension(base, b'<x:n xmlns:x="urn:x"' + attrs + b"/>")


def typed_extensions(pnr: str, count: int = 970, depth: int = 26, name: int = 256) -> bytes:
    """``count`` extension elements that fail their xsi:type, under long-named deep ancestors.

    Every schema error carries a path with every ancestor's name in it.
    """
    tag = b"x:" + b"n" * (name - 2)
    opening = b"<" + tag + b' xmlns:x="urn:x" ' + _XSI + b" " + _XS + b">"
    opening += (b"<" + tag + b">") * (depth - 1)
    leaves = b'<x:v xsi:type="xs:boolean">no</x:v>' * count
    return _extension(valid(pnr), opening + leaves + (b"</" + tag + b">") * depth)


def contract_attributes(pnr: str, per_element: int = 32, body: bytes | None = None) -> bytes:
    """``per_element`` attributes (each a schema error) on every element of the payload."""
    attrs = b"".join(b' a%d="1"' % i for i in range(per_element))
    body = body or valid(pnr)
    head, sep, rest = body.partition(b"<tjsr:cervixScreeningInformation>")
    rest = rest.replace(b"/>", attrs + b"/>")
    out = []
    for piece in rest.split(b"<core:"):
        name, gt, tail = piece.partition(b">")
        out.append(name + attrs + gt + tail if gt and not name.endswith(b"/") else piece)
    return head + sep + b"<core:".join(out)


def many_groups(pnr: str, groups: int = 470) -> bytes:
    """A valid message with ``groups`` follow-up groups (about 16 elements each)."""
    body = valid(pnr, "treatment")
    start = body.index(b"<core:followUpGroups>")
    end = body.index(b"</core:followUpGroups>") + len(b"</core:followUpGroups>")
    return body[:start] + body[start:end] * groups + body[end:]


def many_groups_with_attributes(pnr: str) -> bytes:
    """As many elements as allowed, with as many attributes as allowed: schema errors all."""
    return contract_attributes(pnr, per_element=1, body=many_groups(pnr))


def long_text(pnr: str) -> bytes:
    """A valid message whose extension holds one text of almost the whole cap."""
    base = valid(pnr)
    return _extension(base, b'<x:n xmlns:x="urn:x">' + b"t" * (CAP - len(base) - 1024) + b"</x:n>")


def long_names(pnr: str) -> bytes:
    """Extension elements whose names are as long as libxml2 allows."""
    base = valid(pnr)
    name = b"x:" + b"n" * 49_990
    return _extension(base, _fill(base, lambda i: b"<" + name + b' xmlns:x="urn:x"/>', room=60_000))


def long_namespace(pnr: str) -> bytes:
    """Many elements in one namespace whose name takes most of the cap."""
    base = valid(pnr)
    uri = b"urn:" + b"u" * (4 * 1024 * 1024)
    elements = b"<x:e/>" * ((CAP - len(base) - len(uri) - 1024) // 6)
    return _extension(base, b'<x:n xmlns:x="' + uri + b'">' + elements + b"</x:n>")


def typed_through_namespaces(pnr: str, chain: int = 26, per_element: int = 32) -> bytes:
    """Typed extension elements whose prefix is resolved through a chain of declarations."""
    decls = per_element - 3
    open_tags = b"".join(
        b"<x:c "
        + (b'xmlns:x="urn:x" ' + _XS + b" " + _XSI + b" " if level == 0 else b"")
        + b" ".join(b'xmlns:q%d_%d="urn:q%d"' % (level, i, i) for i in range(decls))
        + b">"
        for level in range(chain)
    )
    leaves = b'<x:v xsi:type="xs:int">n</x:v>' * (1_000 - chain - 1)
    return _extension(valid(pnr), open_tags + leaves + b"</x:c>" * chain)


HOSTILE: dict[str, Callable[[str], bytes]] = {
    "attributes": attributes,
    "envelope-namespaces": envelope_namespaces,
    "spread-namespaces": spread_namespaces,
    "deep": deep,
    "tiny-elements": tiny_elements,
    "long-attribute-values": long_attribute_values,
    "typed-extensions": typed_extensions,
    "contract-attributes": contract_attributes,
    "many-groups": many_groups,
    "many-groups-with-attributes": many_groups_with_attributes,
    "long-text": long_text,
    "long-names": long_names,
    "long-namespace": long_namespace,
    "typed-through-namespaces": typed_through_namespaces,
}


# --- text that must never come back ------------------------------------------------------------

_NS = (
    'xmlns:xs="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:r="urn:riv:clinicalprocess:logistics:cervixscreening:'
    'ProcessCervixScreeningInformationResponder:1" '
    'xmlns:c="urn:riv:clinicalprocess:logistics:cervixscreening:1"'
)


def _probes(s: str) -> dict[str, tuple[str, str]]:
    """(what to replace, what with) in a valid request; ``s`` is the text that must not leak.

    Between them they put ``s`` into every place a schema error can quote: a value of each kind,
    the names of elements, attributes, prefixes, namespaces and types, in the payload and in an
    extension slot (``##other``, validated lax, so any xsi:type applies there).
    """
    x = f'xmlns:x="urn:x{s}" {_NS}'
    end = "</tjsr:cervixScreeningInformation>"
    subject = "<core:subjectOfCare>"

    def ext(content: str) -> tuple[str, str]:
        return end, content + end

    return {
        "boolean-with-quotes": ext(f"<x:n {x} xsi:type=\"xs:boolean\">a' {s} 'b</x:n>"),
        "int": ext(f'<x:n {x} xsi:type="xs:int">{s}{s}</x:n>'),
        "date": ext(f'<x:n {x} xsi:type="xs:date">{s}</x:n>'),
        "hexBinary": ext(f'<x:n {x} xsi:type="xs:hexBinary">{s}z</x:n>'),
        "language": ext(f'<x:n {x} xsi:type="xs:language">{s}-{s}-{s}</x:n>'),
        "nmtokens": ext(f'<x:n {x} xsi:type="xs:NMTOKENS">&lt;{s}</x:n>'),
        "qname-value": ext(f'<x:n {x} xsi:type="xs:QName">p{s}:q</x:n>'),
        "enumeration": ext(f'<x:n {x} xsi:type="r:ResultCodeEnum">a{s}</x:n>'),
        "pattern": ext(f'<x:n {x} xsi:type="c:DateType">{s}</x:n>'),
        "unknown-type": ext(f'<x:n {x} xsi:type="x:t{s}">z</x:n>'),
        "unbound-type-prefix": ext(f'<x:n {x} xsi:type="u{s}:t">z</x:n>'),
        "type-not-a-qname": ext(f'<x:n {x} xsi:type="1{s}">z</x:n>'),
        "simple-type-with-child": ext(f'<x:n {x} xsi:type="xs:string"><x:c{s}/></x:n>'),
        "simple-type-with-attribute": ext(f'<x:n {x} xsi:type="xs:string" a{s}="{s}">v</x:n>'),
        "complex-type-wrong-child": ext(f'<x:n {x} xsi:type="c:IIType"><x:w{s}>{s}</x:w{s}></x:n>'),
        "element-name": (subject, f"<core:p{s}/>{subject}"),
        "element-name-no-namespace": (subject, f"{subject}<n{s}>{s}</n{s}>"),
        "operation-child": (
            "<tjsr:cervixScreeningInformation>",
            f"<tjsr:x{s}/><tjsr:cervixScreeningInformation>",
        ),
        "text-in-element-only": (subject, f"{subject}t{s}"),
        "attribute": (subject, f'<core:subjectOfCare a{s}="{s}">'),
        "namespaced-attribute": (
            subject,
            f'<core:subjectOfCare xmlns:q{s}="urn:{s}" q{s}:b="{s}">',
        ),
        "nil-not-nillable": (
            subject,
            '<core:subjectOfCare xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:nil="true">',
        ),
        "nil-not-boolean": (
            subject,
            '<core:subjectOfCare xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:nil="{s}">',
        ),
    }


def schema_probes(pnr: str, secret: str) -> dict[str, bytes]:
    """Valid requests about ``pnr`` made invalid with ``secret`` where an error would quote it."""
    body = valid(pnr, "treatment").decode()
    out: dict[str, bytes] = {}
    for name, (old, new) in _probes(secret).items():
        assert old in body, name
        out[name] = body.replace(old, new, 1).encode()
    return out


def known_under_long_names(pnr: str, depth: int = 26, name: int = 256) -> bytes:
    """Contract elements inside extensions (validated there: each one an error), as many as
    allowed, at the end of a chain of the longest names allowed: every error's path repeats it.
    """
    tag = b"x:" + b"n" * (name - 2)
    opening = b"<" + tag + b' xmlns:x="urn:x">' + (b"<" + tag + b">") * (depth - 1)
    leaf = b"<tjsr:ProcessCervixScreeningInformation/>"
    leaves = leaf * (1_000 - depth)
    return _extension(valid(pnr), opening + leaves + (b"</" + tag + b">") * depth)


HOSTILE["known-under-long-names"] = known_under_long_names
