"""A region's outbox as the senders work it: due records, claims, and recording attempts.

Everything here works on one region's own store (its engine, its key): region A's outbox and log
are invisible to region B. See :mod:`hub.outbound.states` for the state machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    DateTime,
    Engine,
    Update,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)

from hub.audit import Action, record_access, record_operator
from hub.clock import as_utc, utcnow
from hub.context import Hub
from hub.contract.personnummer import mask_text
from hub.db.claims import claim_statement, claim_with
from hub.db.hub_tables import alerts
from hub.db.region_tables import outbox, outbox_attempts
from hub.outbound.client import CallResult
from hub.outbound.settings import DestinationPolicy
from hub.outbound.states import (
    DELIVERED,
    FAILED,
    FINAL_STATES,
    QUEUED,
    REFUSED,
    SENDING,
    OutboxError,
)
from hub.tenancy.access import Permission, RegionScope, region_cipher
from hub.tenancy.keys import KeyDestroyed, RegionCipher

log = logging.getLogger(__name__)


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
    #: The content hash of the approval the record is sent on (checked before every call).
    decision_sha256: str | None = None
    #: Until when the claim holds (the sender renews it before a call that could outlast it).
    claimed_until: datetime | None = None


def _due(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
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
    times = [t for t in (as_utc(queued), as_utc(claimed)) if t is not None]
    return min(times) if times else None


_CLAIM_STATEMENTS: dict[bool, Update] = {}


def _claim_statement(postgresql: bool) -> Update:
    """The outbox's claim (built once: it runs many times a second): due records of one
    destination become ``sending`` and count an attempt, in the same statement."""
    statement = _CLAIM_STATEMENTS.get(postgresql)
    if statement is None:
        statement = claim_statement(
            outbox,
            ready=lambda now: and_(outbox.c.to_lan == bindparam("b_to_lan"), _due(now)),
            order_by=[outbox.c.next_attempt_at, outbox.c.created_at],
            postgresql=postgresql,
            values={
                "state": SENDING,
                "attempts": outbox.c.attempts + 1,
                "updated_at": bindparam("now", type_=DateTime(timezone=True)),
            },
            returning=[
                outbox.c.id,
                outbox.c.attempts,
                outbox.c.correlation_id,
                outbox.c.request_enc,
                outbox.c.decision_sha256,
            ],
        )
        _CLAIM_STATEMENTS[postgresql] = statement
    return statement


def claim(
    hub: Hub, lan: str, to_lan: str, limit: int, token: str, lease: timedelta
) -> list[Claimed]:
    """Claim up to ``limit`` due records of region ``lan`` for ``to_lan``; count the attempt.

    PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` inside the UPDATE, so concurrent workers take
    disjoint rows without waiting. SQLite: one conditional UPDATE (the file's write lock makes it
    atomic) that re-checks the state. Either way two workers never hold the same record.

    A record whose claim had expired (its worker stopped mid-call) had its attempt counted but
    never recorded: that attempt is written to the log now, as lost (``LEASE``), so that every
    attempt counted is an attempt recorded.
    """
    now = utcnow()
    engine = hub.db.region(lan)
    rows = claim_with(
        engine,
        _claim_statement(not hub.db.is_sqlite),
        token,
        limit=limit,
        lease=lease,
        now=now,
        params={"b_to_lan": to_lan},
    )
    claimed = [
        Claimed(
            lan,
            row.id,
            to_lan,
            row.attempts,
            row.correlation_id,
            row.request_enc,
            token,
            row.decision_sha256,
            now + lease,
        )
        for row in rows
    ]
    _record_lost_attempts(engine, [c for c in claimed if c.attempt > 1], now)
    return claimed


def _record_lost_attempts(engine: Engine, claimed: Sequence[Claimed], now: datetime) -> None:
    """Log the previous attempt of each record as lost where the log has no line for it."""
    if not claimed:
        return
    with engine.begin() as connection:
        logged = {
            (row.outbox_id, row.attempt)
            for row in connection.execute(
                select(outbox_attempts.c.outbox_id, outbox_attempts.c.attempt).where(
                    outbox_attempts.c.outbox_id.in_([c.id for c in claimed])
                )
            )
        }
        lost = [c for c in claimed if (c.id, c.attempt - 1) not in logged]
        if lost:
            connection.execute(
                insert(outbox_attempts),
                [
                    {
                        "outbox_id": c.id,
                        "attempt": c.attempt - 1,
                        "started_at": now,
                        "duration_ms": 0,
                        "worker": "(lost)",
                        "outcome": "retry",
                        "code": "LEASE",
                        "detail": "the worker of this attempt stopped before recording it",
                    }
                    for c in lost
                ],
            )


def renew(hub: Hub, items: Sequence[Claimed], lease: timedelta) -> list[Claimed]:
    """Extend the claims of ``items`` (one region) to ``lease`` from now; return those renewed.

    A claim that is no longer this sender's (it expired and another took it) is not renewed and
    not returned: the record is the other's to call.
    """
    if not items:
        return []
    now = utcnow()
    until = now + lease
    renewed: set[str] = set()
    by_token: dict[str, list[str]] = {}
    for item in items:
        by_token.setdefault(item.token, []).append(item.id)
    with hub.db.region(items[0].lan).begin() as connection:
        for token, ids in by_token.items():
            rows = connection.execute(
                update(outbox)
                .where(
                    outbox.c.id.in_(ids), outbox.c.claimed_by == token, outbox.c.state == SENDING
                )
                .values(claimed_until=until)
                .returning(outbox.c.id)
            )
            renewed.update(row[0] for row in rows)
    return [replace(item, claimed_until=until) for item in items if item.id in renewed]


def unclaim(hub: Hub, items: Sequence[Claimed]) -> int:
    """Give back claimed records never called (one region): queued again, the attempt uncounted.

    Returns how many were given back (a claim already taken over by another sender is left).
    """
    if not items:
        return 0
    now = utcnow()
    given = 0
    by_token: dict[str, list[str]] = {}
    for item in items:
        by_token.setdefault(item.token, []).append(item.id)
    with hub.db.region(items[0].lan).begin() as connection:
        for token, ids in by_token.items():
            given += connection.execute(
                update(outbox)
                .where(
                    outbox.c.id.in_(ids), outbox.c.claimed_by == token, outbox.c.state == SENDING
                )
                .values(
                    state=QUEUED,
                    attempts=outbox.c.attempts - 1,
                    claimed_by=None,
                    claimed_until=None,
                    updated_at=now,
                )
            ).rowcount
    return given


@dataclass(frozen=True)
class Attempt:
    """One finished call of a claimed record (or a claim given up without a call: ``called``
    False, the claim's count of an attempt is taken back)."""

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
    records go to the hub's alerts table (no personal data) and to the log. An attempt made
    without a call (``called`` False) is not counted: ``attempts`` stays the number of calls.
    """
    if not attempts:
        return []
    if cipher is None and any(a.result.response is not None for a in attempts):
        try:
            cipher = region_cipher(hub, lan)
        except KeyDestroyed:
            cipher = None  # the key went while the call was out: its answer cannot be kept
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
        # The claim counted an attempt; one given up without a call is taken back.
        counted = claimed.attempt if item.called else claimed.attempt - 1
        if not item.called:
            values["attempts"] = counted
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
        elif counted >= policy_of(claimed.to_lan).max_attempts:
            values.update(
                state=FAILED, fault_code=result.code, last_error=result.text, final_at=now
            )
            alert = ("exhausted", f"{counted} attempts; last: {result.text}")
        else:
            pause = policy_of(claimed.to_lan).pause_before(counted + 1)
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
                            if result.response is not None and cipher is not None
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


def resend(scope: RegionScope, record_id: str) -> None:
    """Put a *failed* record back in the queue with fresh attempts (an operator fixed the cause).

    Refused records stay refused: the receiver judged their content.
    """
    scope.require(Permission.OPERATE)
    now = utcnow()
    with scope.engine.begin() as connection:
        row = connection.execute(
            select(outbox.c.state, outbox.c.to_lan, outbox.c.decision_id).where(
                outbox.c.id == record_id
            )
        ).first()
        if row is None:
            raise OutboxError(f"region {scope.lan} has no outbox record {record_id}")
        if row.state != FAILED:
            raise OutboxError(f"only a failed record can be resent; this one is {row.state}")
        if row.decision_id is None:
            raise OutboxError(
                "this record was queued before the manual secrecy review existed; no decision "
                "covers it: put it through the review queue instead"
            )
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
        record_access(connection, scope.actor, Action.OUTBOX_RESEND, message_id=record_id)
    with scope.hub.db.hub.begin() as connection:
        record_operator(
            connection,
            scope.actor,
            Action.OUTBOX_RESEND,
            scope.lan,
            f"record {record_id} to {row.to_lan}",
        )


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
