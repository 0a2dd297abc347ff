"""HSA-ids: the Swedish care sector's identifiers of organisations, units and functions."""

from __future__ import annotations

import re
from typing import Final

# "SE" + a ten-digit organisation number, optionally written with the "16" century prefix
# (SE162321000016), and an optional unit suffix after "-" (SE2321000131-XYZ).
HSA_ID_RE: Final = re.compile(r"SE(?:16)?[0-9]{10}(?:-[A-Za-z0-9]{1,40})?")


def is_hsa_id(s: str) -> bool:
    """True if ``s`` has the shape of an HSA-id (``SE2321000131`` or ``SE2321000131-XXXX``)."""
    return HSA_ID_RE.fullmatch(s) is not None
