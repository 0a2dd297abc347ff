"""The identity of a record's content for the review: the SHA-256 of its canonical form."""

from __future__ import annotations

import hashlib

from lxml import etree

from hub.contract.canonical import canonical_bytes


def content_sha256(element: etree._Element) -> str:
    """The SHA-256 of a payload's canonical form: what a decision is taken on, and checked by
    the outbox and the sender against what is sent."""
    return hashlib.sha256(canonical_bytes(element)).hexdigest()
