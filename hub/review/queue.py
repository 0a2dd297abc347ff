"""The review queue as a reviewer pages through it: filters, keyset pages, personnummer masked.

A page is what a decision needs at a glance (destination, kind, flags, the region's reference and
line, the intake, the record's counts, the soft problems our validation found, its state) and
no woman's content: listing is metadata (:attr:`Permission.READ_METADATA`), with the personnummer
masked, and writes one ``records.listed`` line to the region's access log. Opening a record is
:func:`hub.review.views.open_record`.

Pages are keyset pages, oldest first (the queue's order): a page asks the database for the next
``limit`` rows after the last one seen, along an index, so the 2,000th page of a queue of 100,000
costs what the first does (``bench/review.py``). Each state is read along its own stretch of an
index and the pieces merged, because an ``IN`` list of states cannot be read in order along one;
a destination has its own index, flagged records a small partial one, and an intake's records
are found between the intake's start and end.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal, get_args

from sqlalchemy import ColumnElement, Select, false, or_, select, true, union_all

from hub.audit import Action, record_access
from hub.clock import STOCKHOLM, as_utc
from hub.contract.model import Kind
from hub.contract.regions import REGIONS
from hub.db.region_tables import intakes, review_records
from hub.review.records import RECORD_STATES, UNDECIDED
from hub.tenancy.access import NotFound, Permission, RegionScope
from hub.tenancy.keys import masked_personnummer

#: A page of the queue, unless asked otherwise.
PAGE_SIZE: Final = 50
#: The longest page served.
MAX_PAGE: Final = 500
#: ``state`` of a filter that means both undecided states (the default: what waits for someone).
WAITING: Final = "waiting"
#: How far a record's creation time may lie before its intake's (clocks of two nodes).
CLOCK_MARGIN: Final = timedelta(minutes=10)

Flag = Literal["protected_identity", "blocked", "objection"]
FLAGS: Final = get_args(Flag)
KINDS: Final = get_args(Kind)

_LISTED = (
    review_records.c.id,
    review_records.c.created_at,
    review_records.c.state,
    review_records.c.to_lan,
    review_records.c.kind,
    review_records.c.protected_identity,
    review_records.c.blocked,
    review_records.c.objection,
    review_records.c.flagged,
    review_records.c.reference,
    review_records.c.line,
    review_records.c.intake_id,
    review_records.c.summary,
    review_records.c.check_text,
    review_records.c.content_sha256,
    review_records.c.pnr_enc,
    review_records.c.superseded_by,
    review_records.c.decided_at,
    review_records.c.outbox_id,
)


#: The partial index's own condition, as a literal (``flagged = 1`` on SQLite, which matches a
#: partial index only with the value in the statement, not as a parameter).
_FLAGGED = review_records.c.flagged == true()


class QueueError(ValueError):
    """A filter or page the queue cannot serve; the text says which (no personal data)."""


@dataclass(frozen=True)
class QueueFilter:
    """What to list. Every field narrows; the default is every record waiting for a decision."""

    #: One of the record states, :data:`WAITING` (pending and second review), or None for all.
    state: str | None = WAITING
    #: The destination (the woman's home län code).
    to_lan: str | None = None
    #: The scenario: move, sample, treatment, no_information.
    kind: str | None = None
    #: True: flagged records only (any flag); False: unflagged only.
    flagged: bool | None = None
    #: Records carrying this flag.
    flag: Flag | None = None
    #: Taken in at or after this time (a date: from its start, Swedish time).
    received_from: datetime | date | None = None
    #: Taken in before this time (a date: before its start, Swedish time).
    received_before: datetime | date | None = None
    #: Records of one intake (an extract file, an upload, a batch posted to the API).
    intake_id: str | None = None
    #: Records of the intake of one extract file picked up from the drop (``extracts.id``).
    extract_id: str | None = None

    def states(self) -> tuple[str, ...]:
        """The record states this filter lists."""
        if self.state is None:
            return RECORD_STATES
        if self.state == WAITING:
            return UNDECIDED
        if self.state not in RECORD_STATES:
            raise QueueError(f"state must be {WAITING} or one of {', '.join(RECORD_STATES)}")
        return (self.state,)

    def describe(self) -> str:
        """The filter as the access log keeps it (ids and codes only)."""
        parts = [f"state={self.state or 'all'}"]
        for name in ("to_lan", "kind", "flagged", "flag", "intake_id", "extract_id"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}")
        for name in ("received_from", "received_before"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value.isoformat()}")
        return " ".join(parts)


@dataclass(frozen=True)
class QueueItem:
    """One record as the queue lists it: what a decision needs, the personnummer masked."""

    id: str
    created_at: datetime
    state: str
    to_lan: str
    kind: str
    protected_identity: bool
    blocked: bool
    objection: bool
    flagged: bool
    reference: str | None
    line: int
    intake_id: str
    #: Flags and counts of the record's content (no personal data).
    summary: dict[str, Any]
    #: Soft problems our validation found (INFO), for the reviewer to weigh.
    check_text: str | None
    masked_pnr: str
    #: The hash a bulk decision may send back; only for those who may read content (a hash of
    #: a woman's record lets whoever holds it confirm a guess of its content).
    content_sha256: str | None
    superseded_by: str | None
    decided_at: datetime | None
    outbox_id: str | None


@dataclass(frozen=True)
class QueuePage:
    """One page of the queue and where the next one starts (None: this was the last)."""

    items: list[QueueItem]
    next_after: str | None


def queue_position(created_at: datetime, record_id: str) -> str:
    """The position just after the record created at ``created_at`` with id ``record_id``: what
    ``list_queue`` takes as ``after`` (an opaque string to its callers)."""
    raw = f"{as_utc(created_at).isoformat()}|{record_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(after: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)).decode()
        when, record_id = raw.split("|", 1)
        moment = datetime.fromisoformat(when)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise QueueError("not a position in the queue") from None
    if moment.tzinfo is None or not record_id:
        raise QueueError("not a position in the queue")
    return moment.astimezone(UTC), record_id


def _instant(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise QueueError("times need a time zone")
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=STOCKHOLM).astimezone(UTC)


def _intake_window(scope: RegionScope, query: QueueFilter) -> list[ColumnElement[bool]]:
    """The conditions that find one intake's records along the queue's indexes."""
    if query.intake_id is None and query.extract_id is None:
        return []
    conditions = []
    if query.intake_id is not None:
        conditions.append(intakes.c.id == query.intake_id)
    if query.extract_id is not None:
        conditions.append(intakes.c.extract_id == query.extract_id)
    with scope.engine.connect() as connection:
        intake = connection.execute(
            select(intakes.c.id, intakes.c.created_at, intakes.c.finished_at).where(*conditions)
        ).first()
    if intake is None:
        raise NotFound(f"region {scope.lan} has no such intake")
    # An intake's records are made after the intake and before it finished: the window keeps the
    # scan to that stretch of the queue, however long the queue is.
    window = [
        review_records.c.intake_id == intake.id,
        review_records.c.created_at >= as_utc(intake.created_at) - CLOCK_MARGIN,
    ]
    if intake.finished_at is not None:
        window.append(review_records.c.created_at <= as_utc(intake.finished_at) + CLOCK_MARGIN)
    return window


def _conditions(scope: RegionScope, query: QueueFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.to_lan is not None:
        if query.to_lan not in REGIONS:
            raise QueueError("to_lan must be a län code")
        conditions.append(review_records.c.to_lan == query.to_lan)
    if query.kind is not None:
        if query.kind not in KINDS:
            raise QueueError(f"kind must be one of {', '.join(KINDS)}")
        conditions.append(review_records.c.kind == query.kind)
    if query.flag is not None:
        if query.flag not in FLAGS:
            raise QueueError(f"flag must be one of {', '.join(FLAGS)}")
        if query.flagged is False:
            raise QueueError("a flag and flagged=False exclude each other")
        # Through the flagged index: a flag implies flagged.
        conditions.append(_FLAGGED)
        conditions.append(review_records.c[query.flag] == true())
    elif query.flagged:
        conditions.append(_FLAGGED)
    elif query.flagged is False:
        conditions.append(review_records.c.flagged == false())
    if query.received_from is not None:
        conditions.append(review_records.c.created_at >= _instant(query.received_from))
    if query.received_before is not None:
        conditions.append(review_records.c.created_at < _instant(query.received_before))
    conditions.extend(_intake_window(scope, query))
    return conditions


def _page_query(
    states: Sequence[str],
    conditions: list[ColumnElement[bool]],
    position: tuple[datetime, str] | None,
    size: int,
) -> Select[Any]:
    after: list[ColumnElement[bool]] = []
    if position is not None:
        at, record_id = position
        # Spelled out rather than as a row value, so both databases read it as an index range.
        after = [
            review_records.c.created_at >= at,
            or_(review_records.c.created_at > at, review_records.c.id > record_id),
        ]
    order = (review_records.c.created_at, review_records.c.id)

    def one(state: str) -> Select[Any]:
        return (
            select(*_LISTED)
            .where(review_records.c.state == state, *conditions, *after)
            .order_by(*order)
            .limit(size)
        )

    if len(states) == 1:
        return one(states[0])
    # One ordered, limited read per state, then the first ``size`` of them all.
    parts = [select(one(state).subquery()) for state in states]
    merged = union_all(*parts).subquery()
    return select(merged).order_by(merged.c.created_at, merged.c.id).limit(size)


def list_queue(
    scope: RegionScope,
    query: QueueFilter | None = None,
    *,
    after: str | None = None,
    limit: int = PAGE_SIZE,
) -> QueuePage:
    """One page of the region's review queue, oldest first, after position ``after``.

    ``after`` is the ``next_after`` of the page before (None: the first page). Raises
    :class:`QueueError` for a filter or position that makes no sense, :class:`NotFound` for an
    intake or extract the region does not have. The listing is written to the access log.
    """
    scope.require(Permission.READ_METADATA)
    query = query or QueueFilter()
    if not 1 <= limit <= MAX_PAGE:
        raise QueueError(f"a page holds 1 to {MAX_PAGE} records")
    states = query.states()
    conditions = _conditions(scope, query)
    position = _position(after) if after is not None else None
    statement = _page_query(states, conditions, position, limit + 1)
    with scope.engine.begin() as connection:
        rows = connection.execute(statement).all()
        more = len(rows) > limit
        rows = rows[:limit]
        record_access(
            connection,
            scope.actor,
            Action.RECORDS_LISTED,
            resource="review_queue",
            detail=f"{len(rows)} rows; {query.describe()}" + (" (a later page)" if after else ""),
        )
    cipher = scope.cipher
    with_hash = scope.may(Permission.READ_CONTENT)
    items = [
        QueueItem(
            id=row.id,
            created_at=as_utc(row.created_at),
            state=row.state,
            to_lan=row.to_lan,
            kind=row.kind,
            protected_identity=bool(row.protected_identity),
            blocked=bool(row.blocked),
            objection=bool(row.objection),
            flagged=bool(row.flagged),
            reference=row.reference,
            line=int(row.line),
            intake_id=row.intake_id,
            summary=dict(row.summary or {}),
            check_text=row.check_text,
            masked_pnr=masked_personnummer(cipher, row.pnr_enc),
            content_sha256=row.content_sha256 if with_hash else None,
            superseded_by=row.superseded_by,
            decided_at=as_utc(row.decided_at),
            outbox_id=row.outbox_id,
        )
        for row in rows
    ]
    next_after = queue_position(rows[-1].created_at, rows[-1].id) if more and rows else None
    return QueuePage(items, next_after)
