"""A region's outbox: records approved for disclosure, their attempts and final states.

Everything here works on one region's own store (its engine, its key): region A's outbox and log
are invisible to region B, and nothing personal leaves the region's store in clear text — lists
show masked personnummer, alerts in the hub schema carry ids, codes and masked texts only.

State machine (CONTRACT.md §5, RIVTA rule #22)::

    queued ──claim──▶ sending ──OK/INFO──▶ delivered
       ▲                 │ ──ERROR──────▶ refused   (final, alert)
       │                 │ ──config fault▶ failed   (final at once, alert)
       └──pause, backoff─┘ ──transient, attempts used up──▶ failed (alert)

An operator may put a *failed* record back in the queue (:func:`resend`); a refused record is
final, because the receiver judged its content and the same content will be judged the same.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lxml import etree  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from hub.consumer.client import CallResult, build_envelope
from hub.consumer.settings import DestinationPolicy
from hub.consumer.tables import (
    DELIVERED,
    FAILED,
    FINAL_STATES,
    QUEUED,
    REFUSED,
    SENDING,
    STATES,
    alerts,
    outbox,
    outbox_attempts,
)
from hub.context import Hub
from hub.contract.model import CervixScreeningInformation
from hub.contract.names import OPERATION, PAYLOAD_TAG, RESPONDER_NS
from hub.contract.parse import information_from_element
from hub.contract.personnummer import mask, mask_text
from hub.contract.regions import REGIONS
from hub.contract.serialise import information_to_element
from hub.contract.validate import swedish_today, validate_request
from hub.db import as_utc
from hub.messages import canonical_bytes, log_access, region_cipher
from hub.tables import access_log
from hub.tenancy.keys import RegionCipher
from hub.tenancy.registry import Region, audit, get_region

log = logging.getLogger(__name__)

_OPERATION_TAG = f"{{{RESPONDER_NS}}}{OPERATION}"


class OutboxError(ValueError):
    """A record cannot be put in (or acted on in) the outbox; the message says why, without data."""


def utcnow() -> datetime:
    """Now, aware, in UTC: every time in the outbox is UTC."""
    return datetime.now(UTC)


# Times read back from SQLite are naive; every time in the outbox is UTC.
aware = as_utc


# --- enqueue ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enqueued:
    """The outcome of :func:`enqueue`: the record's id, and whether it was already queued."""

    record_id: str
    duplicate: bool
    correlation_id: str
    #: Our own validation's INFO text (soft problems the receiver will also mention), if any.
    check_text: str | None = None


def _payload_element(
    information_or_element: CervixScreeningInformation | etree._Element,
) -> etree._Element:
    if isinstance(information_or_element, CervixScreeningInformation):
        return information_to_element(information_or_element)
    element = information_or_element
    if element.tag == _OPERATION_TAG:
        found = element.find(PAYLOAD_TAG)
        if found is None:
            raise OutboxError(f"{OPERATION} has no cervixScreeningInformation")
        return found
    if element.tag != PAYLOAD_TAG:
        raise OutboxError(
            f"expected {OPERATION} or cervixScreeningInformation in namespace {RESPONDER_NS}"
        )
    return element


def _active_region(hub: Hub, lan: str) -> Region:
    with hub.db.hub.connect() as connection:
        region = get_region(connection, lan)
    if region is None:
        raise OutboxError(f"region {lan} is not a member of this hub")
    if not region.is_active(swedish_today()):
        raise OutboxError(f"region {lan}: the agreement is not active; nothing may be sent")
    return region


def _prepare(
    hub: Hub,
    region: Region,
    cipher: RegionCipher,
    to_lan: str,
    information_or_element: CervixScreeningInformation | etree._Element,
    actor: str,
    reference: str | None,
    today: date,
) -> dict[str, Any]:
    """Validate one record and build its outbox row (not yet stored); OutboxError if refused."""
    lan = region.lan_code
    if to_lan not in REGIONS:
        raise OutboxError(f"destination {to_lan!r} is not a län code")
    if to_lan == lan:
        raise OutboxError("a region does not send to itself")
    if reference is not None and len(reference) > 200:
        raise OutboxError("reference is longer than 200 characters")
    payload = _payload_element(information_or_element)
    operation = etree.Element(_OPERATION_TAG)
    operation.append(etree.fromstring(etree.tostring(payload)))
    verdict = validate_request(operation, to_lan, today=today, codes=hub.codes)
    if verdict.result_code == "ERROR" or verdict.information is None:
        raise OutboxError(f"record refused: {verdict.result_text() or 'invalid'}")
    information = verdict.information
    sender = information.sending_region.region.id.extension
    if sender not in (region.hsa_id, REGIONS[lan].hsa_root):
        # A region sends in its own name only; anything else is a mix-up of extracts.
        raise OutboxError(
            "record refused: sendingRegion/region/id is not the sending region's HSA-id"
        )
    envelope = build_envelope(to_lan, operation)
    # zeep read the payload through the schema; make sure nothing was lost on the way.
    sent = etree.fromstring(envelope).find(f".//{PAYLOAD_TAG}")
    if sent is None or information_from_element(sent) != information:
        raise OutboxError("internal: the request envelope does not carry the approved record")
    pnr = information.subject_of_care.person_id.extension or ""
    now = utcnow()
    return {
        "id": str(uuid.uuid4()),
        "created_at": now,
        "updated_at": now,
        "created_by": actor,
        "to_lan": to_lan,
        "state": QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "correlation_id": str(uuid.uuid4()),
        "content_hash": cipher.keyed_hash(canonical_bytes(payload)),
        "pnr_hash": cipher.keyed_hash(pnr),
        "pnr_enc": cipher.seal(pnr.encode(), "pnr"),
        "request_enc": cipher.seal(envelope, "outbox-request"),
        "kind": information.kind,
        "summary": information.summary(),
        "reference": reference,
        "check_text": verdict.result_text() if verdict.result_code == "INFO" else None,
    }


def _existing(
    connection: Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    """Already queued records by (destination, content hash)."""
    found: dict[tuple[str, str], Any] = {}
    hashes = sorted({h for _, h in keys})
    for start in range(0, len(hashes), 500):
        rows = connection.execute(
            select(
                outbox.c.id,
                outbox.c.to_lan,
                outbox.c.content_hash,
                outbox.c.correlation_id,
                outbox.c.check_text,
            ).where(outbox.c.content_hash.in_(hashes[start : start + 500]))
        )
        for row in rows:
            found[(row.to_lan, row.content_hash)] = row
    return found


def _store(hub: Hub, lan: str, rows: list[dict[str, Any]], actor: str) -> list[Enqueued]:
    """Insert new rows, answer duplicates with the record already queued (one transaction)."""
    engine = hub.db.region(lan)
    results: list[Enqueued] = []
    with engine.begin() as connection:
        existing = _existing(connection, [(r["to_lan"], r["content_hash"]) for r in rows])
        fresh: list[dict[str, Any]] = []
        for row in rows:
            key = (row["to_lan"], row["content_hash"])
            first = existing.get(key)
            if first is not None:
                results.append(Enqueued(first.id, True, first.correlation_id, first.check_text))
                continue
            existing[key] = _RowLike(row)
            fresh.append(row)
            results.append(Enqueued(row["id"], False, row["correlation_id"], row["check_text"]))
        if fresh:
            connection.execute(insert(outbox), fresh)
            connection.execute(
                insert(access_log),
                [
                    {
                        "at": r["created_at"],
                        "actor": actor,
                        "action": "outbox.enqueued",
                        "message_id": r["id"],
                        "detail": f"to {r['to_lan']}",
                    }
                    for r in fresh
                ],
            )
    return results


@dataclass(frozen=True)
class _RowLike:
    """A row queued earlier in the same batch, shaped like a selected row."""

    row: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def correlation_id(self) -> str:
        return str(self.row["correlation_id"])

    @property
    def check_text(self) -> str | None:
        value = self.row["check_text"]
        return None if value is None else str(value)


def enqueue(
    hub: Hub,
    lan: str,
    to_lan: str,
    information_or_element: CervixScreeningInformation | etree._Element,
    actor: str,
    *,
    reference: str | None = None,
) -> Enqueued:
    """Queue one record, approved for disclosure by ``actor``, in region ``lan``'s outbox.

    The record is validated with the contract code (XSD and §3 rules, ``LogicalAddress`` =
    ``to_lan``) and refused with :class:`OutboxError` naming field and rule when invalid. The
    request envelope is built once (zeep, from ``wsdl/``) and stored sealed with the region's key.
    The destination is ``to_lan``. Approving the same content for the same destination twice
    queues it once (``duplicate``).
    ``reference`` is the caller's own handle for receipts (an extract and line, a file name): it
    must not contain personal data.
    """
    region = _active_region(hub, lan)
    cipher = region_cipher(hub, lan)
    row = _prepare(
        hub, region, cipher, to_lan, information_or_element, actor, reference, swedish_today()
    )
    try:
        [queued] = _store(hub, lan, [row], actor)
    except IntegrityError:
        # The same record approved at the same moment by another process: it is queued once.
        [queued] = _store(hub, lan, [row], actor)
    if not queued.duplicate:
        log.info(
            "region %s: record %s queued for %s (%s)", lan, queued.record_id, to_lan, row["kind"]
        )
    return queued


@dataclass(frozen=True)
class Approval:
    """One record of a batch for :func:`enqueue_many`."""

    to_lan: str
    record: CervixScreeningInformation | etree._Element
    reference: str | None = None


def enqueue_many(
    hub: Hub, lan: str, approvals: Iterable[Approval], actor: str
) -> list[Enqueued | OutboxError]:
    """Queue many approved records of region ``lan`` in one transaction (an approved batch).

    Each record is checked as :func:`enqueue` checks it; the answer list has, per approval in
    order, its :class:`Enqueued` or the :class:`OutboxError` that refused it (the others are
    queued all the same).
    """
    region = _active_region(hub, lan)
    cipher = region_cipher(hub, lan)
    today = swedish_today()
    answers: list[Enqueued | OutboxError | None] = []
    rows: list[dict[str, Any]] = []
    for approval in approvals:
        try:
            rows.append(
                _prepare(
                    hub,
                    region,
                    cipher,
                    approval.to_lan,
                    approval.record,
                    actor,
                    approval.reference,
                    today,
                )
            )
            answers.append(None)
        except OutboxError as exc:
            answers.append(exc)
    try:
        stored = iter(_store(hub, lan, rows, actor))
    except IntegrityError:
        stored = iter(_store(hub, lan, rows, actor))
    result: list[Enqueued | OutboxError] = [
        answer if answer is not None else next(stored) for answer in answers
    ]
    log.info("region %s: %d record(s) queued in one batch", lan, len(rows))
    return result


# --- claims and results (used by the senders) ---------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A record a sender holds: enough to call, nothing more."""

    lan: str
    id: str
    to_lan: str
    attempt: int
    correlation_id: str
    request_enc: bytes
    token: str


def _due(now: datetime | Any) -> Any:
    # A record is due when queued and its pause is over, or when a claim expired (its worker died
    # mid-call; the producer is idempotent, so calling again is safe).
    return or_(
        and_(outbox.c.state == QUEUED, outbox.c.next_attempt_at <= now),
        and_(outbox.c.state == SENDING, outbox.c.claimed_until < now),
    )


def due_destinations(hub: Hub, lan: str, now: datetime | None = None) -> set[str]:
    """Destinations with at least one due record in region ``lan``'s outbox."""
    now = now or utcnow()
    with hub.db.region(lan).connect() as connection:
        rows = connection.execute(select(outbox.c.to_lan).where(_due(now)).distinct())
        return {row[0] for row in rows}


def next_due_at(hub: Hub, lan: str) -> datetime | None:
    """When the next queued or claimed record of region ``lan`` may need work, if any."""
    with hub.db.region(lan).connect() as connection:
        queued = connection.execute(
            select(func.min(outbox.c.next_attempt_at)).where(outbox.c.state == QUEUED)
        ).scalar()
        claimed = connection.execute(
            select(func.min(outbox.c.claimed_until)).where(outbox.c.state == SENDING)
        ).scalar()
    times = [t for t in (aware(queued), aware(claimed)) if t is not None]
    return min(times) if times else None


_CLAIM_STATEMENTS: dict[bool, Any] = {}


def _claim_statement(sqlite: bool) -> Any:
    """The claim UPDATE, built once with bind parameters (it runs many times a second)."""
    statement = _CLAIM_STATEMENTS.get(sqlite)
    if statement is not None:
        return statement
    now = bindparam("now", type_=DateTime(timezone=True))
    candidates = (
        select(outbox.c.id)
        .where(outbox.c.to_lan == bindparam("b_to_lan"), _due(now))
        .order_by(outbox.c.next_attempt_at, outbox.c.created_at)
        .limit(bindparam("limit", type_=Integer))
    )
    if not sqlite:
        candidates = candidates.with_for_update(skip_locked=True)
    # A materialised CTE, not ``id IN (subquery)``: PostgreSQL may rescan an IN subquery once per
    # outer row, and a rescan skips the rows this very UPDATE already changed and locks the next
    # ones — claiming more than ``limit``. A materialised CTE is evaluated exactly once.
    chosen = candidates.cte("claimable").prefix_with("MATERIALIZED")
    statement = (
        update(outbox)
        .where(
            outbox.c.id.in_(select(chosen.c.id)),
            outbox.c.to_lan == bindparam("b_to_lan"),
            _due(now),
        )
        .values(
            state=SENDING,
            claimed_by=bindparam("token"),
            claimed_until=bindparam("until", type_=DateTime(timezone=True)),
            attempts=outbox.c.attempts + 1,
            updated_at=now,
        )
        .returning(outbox.c.id, outbox.c.attempts, outbox.c.correlation_id, outbox.c.request_enc)
    )
    _CLAIM_STATEMENTS[sqlite] = statement
    return statement


def claim(
    hub: Hub, lan: str, to_lan: str, limit: int, token: str, lease: timedelta
) -> list[Claimed]:
    """Claim up to ``limit`` due records of region ``lan`` for ``to_lan``; count the attempt.

    PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` inside the UPDATE, so concurrent workers take
    disjoint rows without waiting. SQLite: one conditional UPDATE (the file's write lock makes it
    atomic) that re-checks the state. Either way two workers never hold the same record.
    """
    if limit <= 0:
        return []
    now = utcnow()
    values = {"b_to_lan": to_lan, "now": now, "limit": limit, "token": token, "until": now + lease}
    with hub.db.region(lan).begin() as connection:
        rows = connection.execute(_claim_statement(hub.db.is_sqlite), values).all()
    return [
        Claimed(lan, row.id, to_lan, row.attempts, row.correlation_id, row.request_enc, token)
        for row in rows
    ]


@dataclass(frozen=True)
class Attempt:
    """One finished call of a claimed record (or a claim given up without a call)."""

    claimed: Claimed
    result: CallResult
    started_at: datetime
    called: bool = True


@dataclass(frozen=True)
class Transition:
    """What recording an attempt did to its record."""

    record_id: str
    lan: str
    to_lan: str
    state: str
    code: str
    attempt: int


def _alert_row(
    now: datetime, lan: str, to_lan: str, record_id: str, kind: str, code: str, detail: str
) -> dict[str, Any]:
    return {
        "at": now,
        "lan_code": lan,
        "to_lan": to_lan,
        "record_id": record_id,
        "kind": kind,
        "code": code,
        "detail": mask_text(detail)[:1000],
    }


def record_attempts(
    hub: Hub,
    lan: str,
    attempts: Sequence[Attempt],
    policy: DestinationPolicy | Callable[[str], DestinationPolicy],
    worker: str,
    cipher: RegionCipher | None = None,
) -> list[Transition]:
    """Write the attempts of region ``lan`` (one transaction) and move each record on.

    ``policy`` is the destinations' resend policy, or a function from destination to policy.

    Each update is conditional on the claim token: a record whose claim expired and was taken by
    another worker is left to that worker. Alerts for refused, misconfigured and exhausted
    records go to the hub's alerts table (no personal data) and to the log.
    """
    if not attempts:
        return []
    cipher = cipher or region_cipher(hub, lan)
    policy_of = policy if callable(policy) else (lambda _to_lan: policy)
    now = utcnow()
    planned: list[tuple[Attempt, dict[str, Any], tuple[str, str] | None]] = []
    for item in attempts:
        claimed, result = item.claimed, item.result
        values: dict[str, Any] = {
            "updated_at": now,
            "claimed_by": None,
            "claimed_until": None,
            "fault_code": None,
            "last_error": None,
        }
        alert: tuple[str, str] | None = None
        if result.outcome == "delivered":
            values.update(
                state=DELIVERED, result_code=result.code, result_text=result.text, final_at=now
            )
        elif result.outcome == "refused":
            values.update(state=REFUSED, result_code="ERROR", result_text=result.text, final_at=now)
            alert = ("refused", result.text or "ERROR")
        elif result.outcome == "config":
            values.update(
                state=FAILED, fault_code=result.code, last_error=result.text, final_at=now
            )
            alert = ("configuration", result.text or result.code)
        elif claimed.attempt >= policy_of(claimed.to_lan).max_attempts:
            values.update(
                state=FAILED, fault_code=result.code, last_error=result.text, final_at=now
            )
            alert = ("exhausted", f"{claimed.attempt} attempts; last: {result.text}")
        else:
            pause = policy_of(claimed.to_lan).pause_before(claimed.attempt + 1)
            values.update(
                state=QUEUED,
                fault_code=result.code,
                last_error=result.text,
                next_attempt_at=now + timedelta(seconds=pause),
            )
        planned.append((item, values, alert))
    # Records that end the same way under the same claim are moved in one statement (a batch is
    # mostly "delivered, OK"): a round trip per group, not per record.
    groups: dict[tuple[str, tuple[tuple[str, Any], ...]], list[str]] = {}
    for item, values, _ in planned:
        key = (item.claimed.token, tuple(sorted(values.items())))
        groups.setdefault(key, []).append(item.claimed.id)
    transitions: list[Transition] = []
    alert_rows: list[dict[str, Any]] = []
    attempt_rows: list[dict[str, Any]] = []
    with hub.db.region(lan).begin() as connection:
        moved: set[str] = set()
        for (token, items), ids in groups.items():
            rows = connection.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids), outbox.c.claimed_by == token)
                .values(**dict(items))
                .returning(outbox.c.id)
            )
            moved.update(row[0] for row in rows)
        for item, values, alert in planned:
            claimed, result = item.claimed, item.result
            if claimed.id not in moved:
                # Its claim expired and another worker holds it now: that worker records it.
                log.warning("region %s: record %s was claimed by another worker", lan, claimed.id)
                continue
            state = values["state"]
            if item.called:
                attempt_rows.append(
                    {
                        "outbox_id": claimed.id,
                        "attempt": claimed.attempt,
                        "started_at": item.started_at,
                        "duration_ms": result.duration_ms,
                        "worker": worker[:64],
                        "outcome": "retry" if state == QUEUED else state,
                        "code": result.code,
                        "http_status": result.http_status,
                        "correlation_id": result.correlation_id,
                        "response_enc": (
                            cipher.seal(result.response, "outbox-response")
                            if result.response is not None
                            else None
                        ),
                        "detail": result.text or "",
                    }
                )
            transitions.append(
                Transition(claimed.id, lan, claimed.to_lan, state, result.code, claimed.attempt)
            )
            if alert is not None:
                kind, detail = alert
                alert_rows.append(
                    _alert_row(now, lan, claimed.to_lan, claimed.id, kind, result.code, detail)
                )
        if attempt_rows:
            connection.execute(insert(outbox_attempts), attempt_rows)
    if alert_rows:
        with hub.db.hub.begin() as connection:
            connection.execute(insert(alerts), alert_rows)
        for row in alert_rows:
            # Operators watch the log too; ids and codes only, the text is already masked.
            log.error(
                "ALERT %s: region %s record %s to %s: %s",
                row["kind"],
                lan,
                row["record_id"],
                row["to_lan"],
                row["code"],
            )
    return transitions


# --- what regions and operators see -------------------------------------------------------------


@dataclass(frozen=True)
class OutboxView:
    """One record as a list shows it: personnummer masked, texts masked."""

    id: str
    created_at: datetime
    to_lan: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    kind: str
    masked_pnr: str
    result_code: str | None
    result_text: str | None
    fault_code: str | None
    last_error: str | None
    correlation_id: str
    reference: str | None
    final_at: datetime | None
    receipt_name: str | None


@dataclass(frozen=True)
class AttemptView:
    """One attempt of a record, as the region's log holds it (envelopes stay sealed)."""

    attempt: int
    started_at: datetime
    duration_ms: int
    outcome: str
    code: str
    http_status: int | None
    correlation_id: str | None
    detail: str


def _view(row: Any, cipher: RegionCipher) -> OutboxView:
    return OutboxView(
        id=row.id,
        created_at=aware(row.created_at) or row.created_at,
        to_lan=row.to_lan,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=aware(row.next_attempt_at) if row.state == QUEUED else None,
        kind=row.kind,
        masked_pnr=mask(cipher.open(row.pnr_enc, "pnr").decode()),
        result_code=row.result_code,
        result_text=row.result_text,
        fault_code=row.fault_code,
        last_error=row.last_error,
        correlation_id=row.correlation_id,
        reference=row.reference,
        final_at=aware(row.final_at),
        receipt_name=row.receipt_name,
    )


def list_outbox(
    hub: Hub, lan: str, actor: str, *, state: str | None = None, limit: int = 100
) -> list[OutboxView]:
    """The newest records of region ``lan``'s outbox; the listing goes to its access log."""
    if state is not None and state not in STATES:
        raise OutboxError(f"state must be one of {', '.join(STATES)}")
    cipher = region_cipher(hub, lan)
    query = select(outbox).order_by(outbox.c.created_at.desc(), outbox.c.id).limit(limit)
    if state is not None:
        query = query.where(outbox.c.state == state)
    with hub.db.region(lan).begin() as connection:
        rows = connection.execute(query).all()
        log_access(connection, actor, "outbox.listed", None, f"{len(rows)} rows")
    return [_view(row, cipher) for row in rows]


def get_record(
    hub: Hub, lan: str, record_id: str, actor: str
) -> tuple[OutboxView, list[AttemptView]] | None:
    """One record of region ``lan`` with its attempts, or None (also for another region's id)."""
    cipher = region_cipher(hub, lan)
    with hub.db.region(lan).begin() as connection:
        row = connection.execute(select(outbox).where(outbox.c.id == record_id)).first()
        if row is None:
            return None
        tries = connection.execute(
            select(outbox_attempts)
            .where(outbox_attempts.c.outbox_id == record_id)
            .order_by(outbox_attempts.c.attempt, outbox_attempts.c.id)
        ).all()
        log_access(connection, actor, "outbox.read", record_id)
    views = [
        AttemptView(
            t.attempt,
            aware(t.started_at) or t.started_at,
            t.duration_ms,
            t.outcome,
            t.code,
            t.http_status,
            t.correlation_id,
            t.detail,
        )
        for t in tries
    ]
    return _view(row, cipher), views


def read_envelopes(
    hub: Hub, lan: str, record_id: str, actor: str
) -> tuple[bytes, list[bytes | None]] | None:
    """The request as sent and each attempt's response as received (decrypted), logged."""
    cipher = region_cipher(hub, lan)
    with hub.db.region(lan).begin() as connection:
        row = connection.execute(
            select(outbox.c.request_enc).where(outbox.c.id == record_id)
        ).first()
        if row is None:
            return None
        responses = connection.execute(
            select(outbox_attempts.c.response_enc)
            .where(outbox_attempts.c.outbox_id == record_id)
            .order_by(outbox_attempts.c.attempt, outbox_attempts.c.id)
        ).all()
        log_access(connection, actor, "outbox.envelopes.read", record_id)
    return cipher.open(row.request_enc, "outbox-request"), [
        cipher.open(r.response_enc, "outbox-response") if r.response_enc is not None else None
        for r in responses
    ]


def resend(hub: Hub, lan: str, record_id: str, actor: str) -> None:
    """Put a *failed* record of region ``lan`` back in the queue with fresh attempts (an operator
    fixed the cause). Refused records stay refused: the receiver judged their content.
    """
    now = utcnow()
    with hub.db.region(lan).begin() as connection:
        row = connection.execute(
            select(outbox.c.state, outbox.c.to_lan).where(outbox.c.id == record_id)
        ).first()
        if row is None:
            raise OutboxError(f"region {lan} has no outbox record {record_id}")
        if row.state != FAILED:
            raise OutboxError(f"only a failed record can be resent; this one is {row.state}")
        connection.execute(
            update(outbox)
            .where(outbox.c.id == record_id, outbox.c.state == FAILED)
            .values(
                state=QUEUED,
                attempts=0,
                next_attempt_at=now,
                updated_at=now,
                final_at=None,
                receipt_name=None,
                receipt_at=None,
            )
        )
        log_access(connection, actor, "outbox.resend", record_id)
    with hub.db.hub.begin() as connection:
        audit(connection, actor, "outbox.resend", lan, f"record {record_id} to {row.to_lan}")


def counts(hub: Hub, lan: str) -> dict[tuple[str, str], int]:
    """(destination, state) → number of records in region ``lan``'s outbox (no personal data)."""
    with hub.db.region(lan).connect() as connection:
        rows = connection.execute(
            select(outbox.c.to_lan, outbox.c.state, func.count()).group_by(
                outbox.c.to_lan, outbox.c.state
            )
        ).all()
    return {(r[0], r[1]): int(r[2]) for r in rows}


def pending_count(hub: Hub, lans: Iterable[str]) -> int:
    """Records not yet in a final state, over the given regions."""
    total = 0
    for lan in lans:
        with hub.db.region(lan).connect() as connection:
            total += int(
                connection.execute(
                    select(func.count()).where(outbox.c.state.not_in(FINAL_STATES))
                ).scalar_one()
            )
    return total


# --- alerts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """An operator alert: which region's record, what happened; never personal data."""

    id: int
    at: datetime
    lan_code: str
    to_lan: str | None
    record_id: str | None
    kind: str
    code: str
    detail: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None


def list_alerts(
    hub: Hub, *, lan: str | None = None, include_acknowledged: bool = False, limit: int = 100
) -> list[Alert]:
    """Operator alerts, newest first; only open ones unless asked."""
    query = select(alerts).order_by(alerts.c.at.desc(), alerts.c.id.desc()).limit(limit)
    if lan is not None:
        query = query.where(alerts.c.lan_code == lan)
    if not include_acknowledged:
        query = query.where(alerts.c.acknowledged_at.is_(None))
    with hub.db.hub.connect() as connection:
        rows = connection.execute(query).all()
    return [
        Alert(
            r.id,
            aware(r.at) or r.at,
            r.lan_code,
            r.to_lan,
            r.record_id,
            r.kind,
            r.code,
            r.detail,
            aware(r.acknowledged_at),
            r.acknowledged_by,
        )
        for r in rows
    ]


def acknowledge_alert(hub: Hub, alert_id: int, actor: str) -> bool:
    """Mark an alert as seen by ``actor``; False when there is no such open alert."""
    with hub.db.hub.begin() as connection:
        changed = connection.execute(
            update(alerts)
            .where(alerts.c.id == alert_id, alerts.c.acknowledged_at.is_(None))
            .values(acknowledged_at=utcnow(), acknowledged_by=actor)
        ).rowcount
        if changed:
            audit(connection, actor, "alert.acknowledged", None, f"alert {alert_id}")
    return bool(changed)


def region_ids(connection: Connection) -> list[str]:
    """Län codes of every registered region (for jobs that walk all outboxes)."""
    from hub.tables import regions

    return [row[0] for row in connection.execute(select(regions.c.lan_code))]


__all__ = [
    "Alert",
    "Approval",
    "Attempt",
    "AttemptView",
    "Claimed",
    "Enqueued",
    "OutboxError",
    "OutboxView",
    "Transition",
    "acknowledge_alert",
    "claim",
    "counts",
    "due_destinations",
    "enqueue",
    "enqueue_many",
    "get_record",
    "list_alerts",
    "list_outbox",
    "next_due_at",
    "pending_count",
    "read_envelopes",
    "record_attempts",
    "resend",
]
