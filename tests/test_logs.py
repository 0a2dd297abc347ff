"""Application logs: personnummer masked in messages and tracebacks; ids left readable."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable

from hub.contract.personnummer import mask_text
from hub.logs import MaskPersonnummer


def test_personnummer_masked_but_uuids_and_hsa_ids_kept(make_pnr: Callable[[], str]) -> None:
    pnr = make_pnr()
    ids = ["23938695-4012-4b1c-9a55-012345678901", str(uuid.uuid4()), "SE2321000131-1234"]
    text = f"woman {pnr} and {pnr[:8]}-{pnr[8:]} in " + " ".join(ids)
    masked = mask_text(text)
    assert pnr not in masked and f"{pnr[:8]}-{pnr[8:]}" not in masked
    assert masked.count("****") == 2
    for kept in ids:
        assert kept in masked


def test_filter_masks_message_and_traceback(make_pnr: Callable[[], str]) -> None:
    pnr = make_pnr()
    try:
        raise ValueError(f"bad value {pnr}")
    except ValueError:
        info = sys.exc_info()
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "for %s", (pnr,), info)
    assert MaskPersonnummer().filter(record)
    formatted = logging.Formatter().format(record)
    assert pnr not in formatted and "****" in formatted
