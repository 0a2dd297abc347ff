"""The states of an outbox record, and the error a refused outbox action raises.

State machine (RIVTA rule #22, docs/contract.md)::

    queued ──claim──▶ sending ──OK/INFO──▶ delivered
       ▲                 │ ──ERROR──────▶ refused   (final, alert)
       │                 │ ──config fault▶ failed   (final at once, alert)
       └──pause, backoff─┘ ──transient, attempts used up──▶ failed (alert)

An operator may put a *failed* record back in the queue (:func:`hub.outbound.queue.resend`); a
refused record is final, because the receiver judged its content and the same content will be
judged the same.
"""

from __future__ import annotations

from typing import Final

QUEUED: Final = "queued"
SENDING: Final = "sending"
DELIVERED: Final = "delivered"
REFUSED: Final = "refused"
FAILED: Final = "failed"
FINAL_STATES: Final = (DELIVERED, REFUSED, FAILED)
STATES: Final = (QUEUED, SENDING, *FINAL_STATES)


class OutboxError(ValueError):
    """A record cannot be put in (or acted on in) the outbox; the message says why, without data."""
