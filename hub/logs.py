"""Application logging that never carries a personnummer.

A filter on the root handler masks anything shaped like a personnummer in every record, whatever
library emitted it: a last line of defence behind code that already logs masked values only.
"""

from __future__ import annotations

import logging

from hub.contract.personnummer import mask_text


class MaskPersonnummer(logging.Filter):
    """Rewrite a record's message with personnummer-shaped digits masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the formatted message in place; never drops a record."""
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info:
            # Tracebacks carry values too (SQL parameters, reprs): mask their text as well.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = mask_text(text), None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr with masking, once per process."""
    root = logging.getLogger()
    if any(isinstance(f, MaskPersonnummer) for h in root.handlers for f in h.filters):
        root.setLevel(level)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskPersonnummer())
    root.addHandler(handler)
    root.setLevel(level)
    # Spyne logs whole request bodies at debug/error level: keep it quiet whatever the level.
    logging.getLogger("spyne").setLevel(logging.CRITICAL)
    # Migration chatter drowns the CLI's own output.
    logging.getLogger("alembic").setLevel(logging.WARNING)
