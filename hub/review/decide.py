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
- A refusal is final; the record is never sent, and the region gets a ``withheld`` receipt.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, select, update

from hub.audit import Action, record_access
from hub.clock import swedish_today, utcnow
from hub.db.region_tables import decisions, review_records
from hub.outbound.enqueue import queue_approved
from hub.review.records import APPROVED, PENDING, REFUSED, SECOND_REVIEW, UNDECIDED
from hub.tenancy.access import Forbidden, NotFound, Permission, RegionScope

log = logging.getLogger(__name__)

Outcome = Literal["approve", "refuse"]

#: Longest reason kept; a reason is for people reading the log, not an essay.
MAX_REASON = 2000


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


def _reviewer(scope: RegionScope) -> None:
    scope.require(Permission.DECIDE)
    actor = scope.actor
    # The manual secrecy review is a person's: the hub's jobs and the shell decide nothing.
    if actor.kind != "user" or not actor.name:
        raise Forbidden("only a signed-in reviewer decides on disclosure")
    if not scope.region.is_active(swedish_today()):
        raise DecisionRefused(f"region {scope.lan}: the agreement is not active")


def _reason(reason: str | None) -> str | None:
    text = (reason or "").strip()
    if len(text) > MAX_REASON:
        raise DecisionRefused(f"the reason is longer than {MAX_REASON} characters")
    return text or None


def _first_approver(connection: Connection, record_id: str) -> int | str | None:
    row = connection.execute(
        select(decisions.c.reviewer_user_id, decisions.c.reviewer_name)
        .where(decisions.c.record_id == record_id, decisions.c.outcome == "approve")
        .order_by(decisions.c.decided_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    who: int | str = row.reviewer_user_id if row.reviewer_user_id is not None else row.reviewer_name
    return who


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
        first = _first_approver(connection, record.id)
        me = actor.user_id if actor.user_id is not None else actor.name
        if first == me:
            raise DecisionRefused(
                f"record {record.id}: the second approval must come from another reviewer"
            )
    elif outcome == "approve" and record.flagged and scope.region.second_review_flagged:
        final = False
    now = utcnow()
    decision_id = str(uuid.uuid4())
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
            reviewer_hsa_id=actor.hsa_id,
            reviewer_role="reviewer",
            auth_method=actor.auth_method or "unknown",
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
        detail=f"decision {decision_id}" + (f" batch {batch[0]}" if batch else ""),
        pnr_hash=record.pnr_hash,
    )
    return Decided(
        decision_id, record.id, outcome, final, state, outbox_id, batch[0] if batch else None
    )


def _load(connection: Connection, ids: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for start in range(0, len(ids), 500):
        rows = connection.execute(
            select(review_records).where(review_records.c.id.in_(ids[start : start + 500]))
        )
        found.update({row.id: row for row in rows})
    return found


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

    ``content_sha256`` is the hash of the content the reviewer was shown; a record whose content
    is not that (it cannot change, but the reviewer may have looked at another record) is
    refused. Raises :class:`NotFound` for a record the region does not have (another region's
    ids included), :class:`Forbidden` unless a signed-in reviewer decides, and
    :class:`DecisionRefused` for a decision that cannot be taken (no reason where one is needed,
    already decided, the same reviewer twice).
    """
    _reviewer(scope)
    reason = _reason(reason)
    with scope.engine.begin() as connection:
        record = _load(connection, [record_id]).get(record_id)
        if record is None:
            raise NotFound(f"region {scope.lan} has no record {record_id}")
        if record.content_sha256 != content_sha256:
            raise DecisionRefused(f"record {record_id}: the content shown is not the record's")
        decided = _decide_one(
            scope, connection, record, outcome, reason, batch=None, request_id=request_id
        )
    log.info(
        "region %s: record %s %s by %s", scope.lan, record_id, decided.state, scope.actor.label
    )
    return decided


def decide_bulk(
    scope: RegionScope,
    record_ids: Sequence[str],
    outcome: Outcome,
    *,
    reason: str | None = None,
    request_id: str | None = None,
) -> list[Decided]:
    """One decision for many records, in one transaction: all of them, or none.

    Every id is checked here, whatever the page that sent them showed: an id the region does not
    have, a record not waiting for a decision, or a single flagged record refuses the whole
    request (:class:`DecisionRefused`, :class:`NotFound`) and decides nothing.
    """
    _reviewer(scope)
    reason = _reason(reason)
    ids = list(dict.fromkeys(record_ids))
    if not ids:
        raise DecisionRefused("no records were chosen")
    batch = (str(uuid.uuid4()), len(ids))
    with scope.engine.begin() as connection:
        found = _load(connection, ids)
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
        results = [
            _decide_one(
                scope, connection, found[i], outcome, reason, batch=batch, request_id=request_id
            )
            for i in ids
        ]
    log.info(
        "region %s: %d record(s) %s in batch %s by %s",
        scope.lan,
        len(results),
        "approved" if outcome == "approve" else "refused",
        batch[0],
        scope.actor.label,
    )
    return results
