"""Application logging that never carries a personnummer.

A filter on the root handler masks anything shaped like a personnummer in every record, whatever
library emitted it: a last line of defence behind code that already logs masked values only.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import UTC, datetime
from typing import Final

import orjson

from hub.contract.personnummer import mask_text

LOG_FORMATS = ("text", "json")

# What an identifier a caller sends (a correlation id: a UUID, as the platform writes it) may look
# like to be written to a log as it is.
_LOGGABLE_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def loggable_id(value: str | None) -> str:
    """A caller's identifier as a log may show it: as sent if plainly an id, else a fixed text.

    The value is request data: anything (a personnummer, a name, line breaks that would forge
    log lines) can be put there, and masking covers only what looks like a personnummer.
    """
    if value is None:
        return "(none)"
    if _LOGGABLE_ID_RE.fullmatch(value) and mask_text(value) == value:
        return value
    return "(not shown: not an id)"


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


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``AGENTHUB_LOG_FORMAT=json``), for the journal and log shippers.

    Keys: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``pid``, and ``exception``
    when there is one. It formats what :class:`MaskPersonnummer` left, so it must sit on a handler
    with that filter (as :func:`configure_logging` and ``deploy/gunicorn.conf.py`` put it); it
    masks the message once more itself, so a handler set up without the filter leaks nothing.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_text(record.getMessage()),
            "pid": os.getpid(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = mask_text(record.exc_text)
        return orjson.dumps(line).decode()


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Log to stderr with masking, once per process; ``log_format`` is ``text`` or ``json``."""
    root = logging.getLogger()
    if any(isinstance(f, MaskPersonnummer) for h in root.handlers for f in h.filters):
        root.setLevel(level)
        return
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskPersonnummer())
    root.addHandler(handler)
    root.setLevel(level)
    # Spyne logs whole request bodies at debug/error level: keep it quiet whatever the level.
    logging.getLogger("spyne").setLevel(logging.CRITICAL)
    # Migration chatter drowns the CLI's own output.
    logging.getLogger("alembic").setLevel(logging.WARNING)
