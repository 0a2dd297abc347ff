"""The manual secrecy review's decisions: approve or refuse, one by one or in bulk.

A decision is taken by a person (a signed-in user holding the reviewer role in the region) on
exactly the content whose SHA-256 they were shown, and is written as an append-only row of the
region's store: who (user id, name, HSA-id, role, how they signed in), when, on which content,
the flags as they were, the outcome and the reason, and for a bulk decision its batch.

- Records flagged as protected identity, blocked or objection are never part of a bulk
  decision: :func:`decide_bulk` re-checks every id and refuses the whole request if one is
  flagged (the database refuses such a row too). They need an individual decision with a reason.
- A region whose policy asks for it (``regions.second_review_flagged``) needs the approval of a
  second reviewer, a different user, before a flagged record is sent.
- A final approval puts the record in the outbox in the same transaction, tied to the decision
  by a foreign key over (decision id, content hash, outcome, final): nothing reaches the outbox
  without a matching approval, and the sender re-checks the hash of what it sends.
- A refusal is final; the record is never sent, and the region gets a ``withheld`` receipt
  (:mod:`hub.outbound.receipts`).
- The database holds the same line on its own (migration region0005): a decision must name its
  record's content hash, destination and flags and be taken on a record waiting for it; a
  record has one final decision; a second approval comes from another person; decisions are
  never changed or deleted; a record's state moves to approved or refused only with the
  decision that says so.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from hub.audit import Action, record_access
from hub.clock import swedish_today, utcnow
from hub.db.region_tables import decisions, review_records
from hub.outbound.enqueue import queue_approved
from hub.review.records import APPROVED, PENDING, REFUSED, SECOND_REVIEW, UNDECIDED
from hub.tenancy.access import Actor, Forbidden, NotFound, Permission, RegionScope, Role
from hub.tenancy.keys import masked_personnummer

log = logging.getLogger(__name__)

Outcome = Literal["approve", "refuse"]
OUTCOMES: tuple[Outcome, ...] = ("approve", "refuse")

#: Longest reason kept; a reason is for people reading the log, not an essay.
MAX_REASON = 2000
#: Most records one bulk decision takes: one transaction, a reviewer's page or a few.
MAX_BULK = 1000

T = TypeVar("T")


class DecisionRefused(ValueError):
    """A decision the hub will not record; the text says why (ids only, no personal data)."""


@dataclass(frozen=True)
class Decided:
    """What one decision did to its record."""

    decision_id: str
    record_id: str
    outcome: Outcome
    #: False for a first approval waiting for a second reviewer.
    final: bool
    #: The record's state after the decision.
    state: str
    #: The outbox record, when a final approval queued it.
    outbox_id: str | None = None
    batch_id: str | None = None
    #: The content the decision was taken on.
    content_sha256: str = ""


def _reviewer(scope: RegionScope) -> None:
    scope.require(Permission.DECIDE)
    actor = scope.actor
    # The manual secrecy review is a person's: the hub's jobs and the shell decide nothing, and
    # a decision names who took it and how they proved it.
    if actor.kind != "user" or not actor.name:
        raise Forbidden("only a signed-in reviewer decides on disclosure")
    if not actor.auth_method:
        raise Forbidden("a decision needs to know how its reviewer signed in")
    if not scope.region.is_active(swedish_today()):
        raise DecisionRefused(f"region {scope.lan}: the agreement is not active")


def _reason(reason: str | None) -> str | None:
    text = (reason or "").strip()
    if len(text) > MAX_REASON:
        raise DecisionRefused(f"the reason is longer than {MAX_REASON} characters")
    return text or None


def _outcome(outcome: str) -> Outcome:
    if outcome not in OUTCOMES:
        raise DecisionRefused("a decision is approve or refuse")
    return outcome


def same_person(
    a_user_id: int | None,
    a_hsa_id: str | None,
    a_name: str | None,
    b_user_id: int | None,
    b_hsa_id: str | None,
    b_name: str | None,
) -> bool:
    """Whether two reviewers are one person: the same user id, or the same HSA-id (a person's
    own), or, with neither known for both, the same name. The database's trigger on decisions
    applies the same rule."""
    if a_user_id is not None and a_user_id == b_user_id:
        return True
    if a_hsa_id and a_hsa_id == b_hsa_id:
        return True
    return (
        a_user_id is None
        and b_user_id is None
        and not a_hsa_id
        and not b_hsa_id
        and a_name == b_name
    )


def _first_approved_by(connection: Connection, record_id: str, actor: Actor) -> bool:
    """Whether ``actor`` gave the first (not final) approval of a record in second review."""
    row = connection.execute(
        select(decisions.c.reviewer_user_id, decisions.c.reviewer_hsa_id, decisions.c.reviewer_name)
        .where(
            decisions.c.record_id == record_id,
            decisions.c.step == 1,
            decisions.c.outcome == "approve",
        )
        .limit(1)
    ).first()
    if row is None:
        return False
    return same_person(
        row.reviewer_user_id,
        row.reviewer_hsa_id,
        row.reviewer_name,
        actor.user_id,
        actor.hsa_id,
        actor.name,
    )


def _decide_one(
    scope: RegionScope,
    connection: Connection,
    record: Any,
    outcome: Outcome,
    reason: str | None,
    *,
    batch: tuple[str, int] | None,
    request_id: str | None,
) -> Decided:
    actor = scope.actor
    if record.state not in UNDECIDED:
        raise DecisionRefused(f"record {record.id} is {record.state}, not waiting for a decision")
    if (record.flagged or outcome == "refuse") and reason is None:
        raise DecisionRefused(f"record {record.id}: a reason is required for this decision")
    step, final = 1, True
    if record.state == SECOND_REVIEW:
        step = 2
        # Withholding is always allowed, also to the first reviewer; disclosing needs two people.
        if outcome == "approve" and _first_approved_by(connection, record.id, actor):
            raise DecisionRefused(
                f"record {record.id}: the second approval must come from another reviewer"
            )
    elif outcome == "approve" and record.flagged and scope.region.second_review_flagged:
        final = False
    now = utcnow()
    decision_id = str(uuid.uuid4())
    # The decision first: the database checks it against the record as it is now (content,
    # destination, flags, waiting), and the record's new state against the decision.
    connection.execute(
        decisions.insert().values(
            id=decision_id,
            record_id=record.id,
            content_sha256=record.content_sha256,
            to_lan=record.to_lan,
            protected_identity=record.protected_identity,
            blocked=record.blocked,
            objection=record.objection,
            outcome=outcome,
            final=final,
            step=step,
            reason=reason,
            reviewer_user_id=actor.user_id,
            reviewer_name=actor.name,
            reviewer_hsa_id=actor.hsa_id or None,
            reviewer_role=Role.REVIEWER.value,
            auth_method=actor.auth_method,
            decided_at=now,
            batch_id=batch[0] if batch else None,
            batch_size=batch[1] if batch else None,
            request_id=request_id,
        )
    )
    if not final:
        state = SECOND_REVIEW
    elif outcome == "approve":
        state = APPROVED
    else:
        state = REFUSED
    outbox_id = None
    if final and outcome == "approve":
        outbox_id = queue_approved(scope, connection, record, decision_id, actor.label)
    changed = connection.execute(
        update(review_records)
        .where(review_records.c.id == record.id, review_records.c.state == record.state)
        .values(
            state=state,
            updated_at=now,
            decided_at=now if final else None,
            outbox_id=outbox_id,
        )
    ).rowcount
    if changed != 1:
        # Another reviewer decided this record at the same moment: theirs stands.
        raise DecisionRefused(f"record {record.id} was decided by someone else meanwhile")
    record_access(
        connection,
        actor,
        Action.RECORD_APPROVED if outcome == "approve" else Action.RECORD_REFUSED,
        message_id=record.id,
        resource=f"review_record/{record.id}",
        detail=f"decision {decision_id} step {step}"
        + (" final" if final else " first of two")
        + (f" batch {batch[0]} of {batch[1]}" if batch else ""),
        pnr_hash=record.pnr_hash,
        masked_pnr=masked_personnummer(scope.cipher, record.pnr_enc),
        role=Role.REVIEWER.value,
    )
    return Decided(
        decision_id,
        record.id,
        outcome,
        final,
        state,
        outbox_id,
        batch[0] if batch else None,
        record.content_sha256,
    )


def _load(connection: Connection, ids: Sequence[str], *, lock: bool = False) -> dict[str, Any]:
    """The review records of ``ids``; with ``lock`` (PostgreSQL) held until the transaction ends,
    so a reviewer deciding the same record at the same moment waits and then sees it decided."""
    found: dict[str, Any] = {}
    ordered = sorted(ids)  # one lock order for everyone: no deadlock between two bulks
    for start in range(0, len(ordered), 500):
        query = (
            select(review_records)
            .where(review_records.c.id.in_(ordered[start : start + 500]))
            .order_by(review_records.c.id)
        )
        if lock:
            query = query.with_for_update()
        found.update({row.id: row for row in connection.execute(query)})
    return found


def _raced(scope: RegionScope, ids: Sequence[str], work: Callable[[], T]) -> T:
    """Run ``work``; a decision the database refused because another reviewer decided one of
    ``ids`` at the same moment (SQLite takes no row locks) becomes :class:`DecisionRefused`."""
    try:
        return work()
    except IntegrityError:
        with scope.engine.connect() as connection:
            states = _load(connection, ids)
        taken = [i for i in ids if i in states and states[i].state not in UNDECIDED]
        if taken:
            raise DecisionRefused(
                f"record {taken[0]} was decided or superseded meanwhile; nothing was decided"
            ) from None
        raise


def decide(
    scope: RegionScope,
    record_id: str,
    outcome: Outcome,
    *,
    content_sha256: str,
    reason: str | None = None,
    request_id: str | None = None,
) -> Decided:
    """Record one reviewer's decision on one record, taken on the content ``content_sha256``.

    ``content_sha256`` is the hash of the content the reviewer was shown
    (:func:`hub.review.views.open_record`); a record whose content is not that (it cannot
    change, but the reviewer may have looked at another record) is refused. Raises
    :class:`NotFound` for a record the region does not have (another region's ids included),
    :class:`Forbidden` unless a signed-in reviewer decides, and :class:`DecisionRefused` for a
    decision that cannot be taken (no reason where one is needed, already decided, the same
    reviewer twice).
    """
    _reviewer(scope)
    outcome = _outcome(outcome)
    reason = _reason(reason)

    def work() -> Decided:
        with scope.engine.begin() as connection:
            record = _load(connection, [record_id], lock=True).get(record_id)
            if record is None:
                raise NotFound(f"region {scope.lan} has no record {record_id}")
            if record.content_sha256 != content_sha256:
                raise DecisionRefused(f"record {record_id}: the content shown is not the record's")
            return _decide_one(
                scope, connection, record, outcome, reason, batch=None, request_id=request_id
            )

    decided = _raced(scope, [record_id], work)
    log.info(
        "region %s: record %s %s by %s", scope.lan, record_id, decided.state, scope.actor.label
    )
    return decided


def decide_bulk(
    scope: RegionScope,
    record_ids: Sequence[str],
    outcome: Outcome,
    *,
    content_sha256s: Mapping[str, str] | None = None,
    reason: str | None = None,
    request_id: str | None = None,
) -> list[Decided]:
    """One decision for many records, in one transaction: all of them, or none.

    Every id is checked here, whatever the page that sent them showed: an id the region does not
    have, a record not waiting for a decision, or a single flagged record refuses the whole
    request (:class:`DecisionRefused`, :class:`NotFound`) and decides nothing. With
    ``content_sha256s`` (record id → the hash the reviewer's page listed), a record whose
    content is not the one listed refuses the whole request too.
    """
    _reviewer(scope)
    outcome = _outcome(outcome)
    reason = _reason(reason)
    ids = list(dict.fromkeys(record_ids))
    if not ids:
        raise DecisionRefused("no records were chosen")
    if len(ids) > MAX_BULK:
        raise DecisionRefused(f"at most {MAX_BULK} records in one decision; nothing was decided")
    if outcome == "refuse" and reason is None:
        raise DecisionRefused("a refusal needs a reason; nothing was decided")
    if content_sha256s is not None and set(ids) - set(content_sha256s):
        raise DecisionRefused("every record needs the hash of the content shown")
    batch = (str(uuid.uuid4()), len(ids))

    def work() -> list[Decided]:
        with scope.engine.begin() as connection:
            found = _load(connection, ids, lock=True)
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFound(f"region {scope.lan} has no record {missing[0]}")
            flagged = [i for i in ids if found[i].flagged]
            if flagged:
                raise DecisionRefused(
                    f"{len(flagged)} of the records are flagged and need an individual decision "
                    f"with a reason (first: {flagged[0]}); nothing was decided"
                )
            waiting = [i for i in ids if found[i].state != PENDING]
            if waiting:
                raise DecisionRefused(
                    f"record {waiting[0]} is {found[waiting[0]].state}; nothing was decided"
                )
            if content_sha256s is not None:
                changed = [i for i in ids if found[i].content_sha256 != content_sha256s[i]]
                if changed:
                    raise DecisionRefused(
                        f"record {changed[0]}: the content shown is not the record's; "
                        "nothing was decided"
                    )
            return [
                _decide_one(
                    scope, connection, found[i], outcome, reason, batch=batch, request_id=request_id
                )
                for i in ids
            ]

    results = _raced(scope, ids, work)
    log.info(
        "region %s: %d record(s) %s in batch %s by %s",
        scope.lan,
        len(results),
        "approved" if outcome == "approve" else "refused",
        batch[0],
        scope.actor.label,
    )
    return results
