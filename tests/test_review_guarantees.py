"""Nothing is sent without a decision: what the database itself refuses, and the sender's check.

Every test runs on SQLite and on PostgreSQL. The rows are written with raw INSERTs and UPDATEs,
as a bug, a script or a person with a database prompt would: the services are not in the way,
so what refuses is the schema (foreign key, checks, triggers of migration region0005). The last
tests are the sender's own check of what it sends against its approval, and a forged bulk
request.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from hub.clock import swedish_today, utcnow
from hub.context import Hub
from hub.contract.names import OPERATION_TAG, SOAP11_ENV_NS
from hub.contract.samples import Scenario, sample_information
from hub.db.region_tables import decisions, outbox, review_records
from hub.outbound.client import build_envelope
from hub.outbound.enqueue import approved_payload, matches_its_approval
from hub.outbound.sender import run_senders_once
from hub.review.content import content_sha256
from hub.review.decide import DecisionRefused, decide, decide_bulk
from hub.review.records import NO_FLAGS, Flags
from hub.tenancy.access import Actor, Permission, RegionScope, Role, region_scope
from hub.tenancy.registry import MemberRegion
from tests.conftest import LiveServer, reviewer_of, submit
from tests.test_consumer import FakePlatform, settings_for

A, B, C = "14", "01", "12"


@pytest.fixture
def platform() -> Iterator[tuple[FakePlatform, LiveServer]]:
    """A fake platform on loopback that answers OK and records every call."""
    fake = FakePlatform()
    server = LiveServer(fake)
    yield fake, server
    server.stop()


def reviewer(hub: Hub, lan: str = A, actor: Actor | None = None) -> RegionScope:
    """A reviewer's scope of region ``lan``."""
    return region_scope(hub, actor or reviewer_of(lan), lan, Permission.DECIDE)


def second_reviewer(lan: str = A) -> Actor:
    """Another reviewer of region ``lan``: another person."""
    return Actor(
        kind="user",
        label=f"user:second-{lan}",
        name=f"Andra granskare {lan}",
        hsa_id=f"SE2321000131-G2{lan}",
        roles={lan: frozenset({Role.REVIEWER})},
        auth_method="siths",
    )


@pytest.fixture
def take(hub: Hub, regions_ab: Any, make_pnr: Callable[[], str]) -> Callable[..., Any]:
    """Take one fresh record of region A in (to ``to``, with ``flags``): its review row."""

    def take_one(to: str = B, flags: Flags = NO_FLAGS, kind: Scenario = "sample") -> Any:
        info = sample_information(kind, pnr=make_pnr(), sending_lan=A, today=swedish_today())
        stored = submit(hub, A, to, info, flags=flags)
        assert stored.outcome == "queued" and stored.record_id is not None
        return row_of(hub, review_records, stored.record_id)

    return take_one


def row_of(hub: Hub, table: Any, row_id: str, lan: str = A) -> Any:
    """One row of ``table`` by id."""
    with hub.db.region(lan).connect() as connection:
        return connection.execute(select(table).where(table.c.id == row_id)).one()


def decisions_of(hub: Hub, record_id: str, lan: str = A) -> list[Any]:
    """The decisions on one record, oldest first."""
    with hub.db.region(lan).connect() as connection:
        return list(
            connection.execute(
                select(decisions)
                .where(decisions.c.record_id == record_id)
                .order_by(decisions.c.decided_at)
            )
        )


def execute(hub: Hub, statement: Any, lan: str = A) -> None:
    """Run one raw statement in its own transaction on region ``lan``'s store."""
    with hub.db.region(lan).begin() as connection:
        connection.execute(statement)


def refused_by_database(hub: Hub, statement: Any, lan: str = A) -> str:
    """Run ``statement``; it must fail as an integrity error. Return the database's text."""
    with pytest.raises(IntegrityError) as caught:
        execute(hub, statement, lan)
    return str(caught.value.orig)


def approved(hub: Hub, take: Callable[..., Any], to: str = B) -> tuple[Any, Any, Any]:
    """A record taken in and approved: its review row, its decision and its outbox row."""
    record = take(to)
    decided = decide(reviewer(hub), record.id, "approve", content_sha256=record.content_sha256)
    assert decided.outbox_id is not None
    return (
        row_of(hub, review_records, record.id),
        row_of(hub, decisions, decided.decision_id),
        row_of(hub, outbox, decided.outbox_id),
    )


def outbox_copy(row: Any, **changes: Any) -> dict[str, Any]:
    """The values of an outbox row as a new row (new id, its own content key), with changes."""
    values = dict(row._mapping)
    values.update(id=str(uuid.uuid4()), content_hash=uuid.uuid4().hex, receipt_name=None)
    values.update(changes)
    return values


# --- the outbox: no row without a final approval of its content --------------------------------


def test_a_direct_insert_into_the_outbox_without_a_decision_fails(
    hub: Hub, take: Callable[..., Any]
) -> None:
    _, _, sent = approved(hub, take)
    values = outbox_copy(
        sent,
        review_record_id=None,
        decision_id=None,
        decision_sha256=None,
        decision_outcome=None,
        decision_final=None,
        state="queued",
    )
    assert "ck_outbox_decided" in refused_by_database(hub, insert(outbox).values(**values))


@pytest.mark.parametrize("missing", ["decision_sha256", "decision_final", "review_record_id"])
def test_a_decision_named_with_a_null_beside_it_fails(
    hub: Hub, take: Callable[..., Any], missing: str
) -> None:
    # A CHECK passes when it is NULL and a foreign key with a NULL column is not checked: the
    # first check let (decision id, NULL hash) and (decision id, NULL final) through.
    record, _, sent = approved(hub, take)
    values = outbox_copy(sent, decision_id=str(uuid.uuid4()), **{missing: None})
    refused_by_database(hub, insert(outbox).values(**values))
    assert row_of(hub, review_records, record.id).state == "approved"


def fk_failed(hub: Hub, message: str) -> bool:
    """Whether the database's text says the outbox's foreign key to its decision failed."""
    return ("FOREIGN KEY" in message) if hub.db.is_sqlite else ("fk_outbox_decision" in message)


def unused_approval(hub: Hub, take: Callable[..., Any]) -> tuple[Any, dict[str, Any]]:
    """A record with a final approval written straight into decisions (no outbox row yet)."""
    record = take()
    values = _decision_values(record)
    execute(hub, insert(decisions).values(**values))
    return record, values


def test_an_outbox_row_must_name_its_approvals_record_destination_and_hash(
    hub: Hub, take: Callable[..., Any]
) -> None:
    _, _, sent = approved(hub, take)
    record, decision = unused_approval(hub, take)
    other = take()
    right = {
        "decision_id": decision["id"],
        "review_record_id": record.id,
        "to_lan": record.to_lan,
        "decision_sha256": record.content_sha256,
        "decision_outcome": "approve",
        "decision_final": True,
    }
    # The first foreign key named only (decision, hash, outcome, final): another record, or the
    # same content to another region, passed.
    for wrong in (
        {"decision_sha256": other.content_sha256},
        {"review_record_id": other.id},
        {"to_lan": C},
        {"decision_id": str(uuid.uuid4())},
    ):
        values = outbox_copy(sent, **{**right, **wrong})
        assert fk_failed(hub, refused_by_database(hub, insert(outbox).values(**values))), wrong
    # The control: the right values are accepted, so each refusal above was its wrong value's.
    execute(hub, insert(outbox).values(**outbox_copy(sent, **right)))


def test_one_approval_queues_one_outbox_row(hub: Hub, take: Callable[..., Any]) -> None:
    _, _, sent = approved(hub, take)
    message = refused_by_database(hub, insert(outbox).values(**outbox_copy(sent)))
    assert ("outbox.decision_id" if hub.db.is_sqlite else "uq_outbox_decision") in message


def test_a_refusal_or_a_first_of_two_approvals_queues_nothing(
    hub: Hub, add_region: Callable[..., MemberRegion], take: Callable[..., Any]
) -> None:
    _, _, sent = approved(hub, take)
    refused = take()
    decide(
        reviewer(hub), refused.id, "refuse", content_sha256=refused.content_sha256, reason="menb"
    )
    [refusal] = decisions_of(hub, refused.id)
    base = {
        "review_record_id": refused.id,
        "to_lan": refused.to_lan,
        "decision_id": refusal.id,
        "decision_sha256": refused.content_sha256,
    }
    # The refusal's own values: the check wants an approval.
    values = outbox_copy(sent, **base, decision_outcome="refuse", decision_final=True)
    assert "ck_outbox_decided" in refused_by_database(hub, insert(outbox).values(**values))
    # Claiming it was an approval: no such decision.
    values = outbox_copy(sent, **base, decision_outcome="approve", decision_final=True)
    assert fk_failed(hub, refused_by_database(hub, insert(outbox).values(**values)))

    # A flagged record under the second-reviewer policy: its first approval is not final.
    add_region(A, "SE2321000131", "Västra Götalandsregionen", second_review_flagged=True)
    flagged = take(flags=Flags(protected_identity=True))
    first = decide(
        reviewer(hub), flagged.id, "approve", content_sha256=flagged.content_sha256, reason="ok"
    )
    assert (first.final, first.outbox_id, first.state) == (False, None, "second_review")
    values = outbox_copy(
        sent,
        review_record_id=flagged.id,
        decision_id=first.decision_id,
        decision_sha256=flagged.content_sha256,
        decision_outcome="approve",
        decision_final=False,
    )
    refused_by_database(hub, insert(outbox).values(**values))
    values["decision_final"] = True
    refused_by_database(hub, insert(outbox).values(**values))


def test_an_outbox_rows_request_destination_and_approval_never_change(
    hub: Hub, take: Callable[..., Any]
) -> None:
    _, _, first = approved(hub, take)
    _, _, second = approved(hub, take)
    # Swapping two approved records' requests: each would send the other's content.
    refused_by_database(
        hub,
        update(outbox).where(outbox.c.id == first.id).values(request_enc=second.request_enc),
    )
    for column, value in (
        ("to_lan", C),
        ("decision_sha256", second.decision_sha256),
        ("decision_id", second.decision_id),
        ("review_record_id", second.review_record_id),
        ("decision_final", False),
    ):
        message = refused_by_database(
            hub, update(outbox).where(outbox.c.id == first.id).values(**{column: value})
        )
        assert "keeps the request, destination and approval" in message
    # What the senders do move is not blocked.
    execute(hub, update(outbox).where(outbox.c.id == first.id).values(attempts=2))
    assert row_of(hub, outbox, first.id).request_enc == first.request_enc


# --- decisions: append-only, and each on its record as it is ---------------------------------


def test_decisions_are_never_updated_or_deleted(hub: Hub, take: Callable[..., Any]) -> None:
    _, decision, _ = approved(hub, take)
    for statement in (
        update(decisions).where(decisions.c.id == decision.id).values(outcome="refuse"),
        update(decisions).where(decisions.c.id == decision.id).values(reason="later"),
        delete(decisions).where(decisions.c.id == decision.id),
        delete(decisions),
    ):
        assert "append-only" in refused_by_database(hub, statement)
    if not hub.db.is_sqlite:
        assert "never emptied" in refused_by_database(
            hub, text("TRUNCATE region_14.decisions CASCADE")
        )
    assert row_of(hub, decisions, decision.id) == decision


def _decision_values(record: Any, **changes: Any) -> dict[str, Any]:
    values = {
        "id": str(uuid.uuid4()),
        "record_id": record.id,
        "content_sha256": record.content_sha256,
        "to_lan": record.to_lan,
        "protected_identity": record.protected_identity,
        "blocked": record.blocked,
        "objection": record.objection,
        "outcome": "approve",
        "final": True,
        "step": 1,
        "reason": None,
        "reviewer_user_id": None,
        "reviewer_name": "Granskare",
        "reviewer_hsa_id": "SE2321000131-G9",
        "reviewer_role": "reviewer",
        "auth_method": "siths",
        "decided_at": utcnow(),
    }
    values.update(changes)
    return values


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"content_sha256": "0" * 64}, "content, destination and flags"),
        ({"to_lan": C}, "content, destination and flags"),
        ({"blocked": True, "reason": "x"}, "content, destination and flags"),
        ({"step": 2, "outcome": "refuse", "reason": "x"}, "waiting for that decision"),
        ({"final": False, "outcome": "refuse", "reason": "x"}, "ck_decisions_step"),
        ({"batch_id": "b"}, "ck_decisions_batch"),
        ({"auth_method": ""}, "ck_decisions_reviewer"),
        ({"outcome": "refuse"}, "ck_decisions_reason"),
        ({"outcome": "maybe", "reason": "x"}, "ck_decisions_outcome"),
    ],
)
def test_a_decision_must_name_its_record_as_it_is(
    hub: Hub, take: Callable[..., Any], changes: dict[str, Any], message: str
) -> None:
    record = take()
    assert message in refused_by_database(
        hub, insert(decisions).values(**_decision_values(record, **changes))
    )
    assert decisions_of(hub, record.id) == []


def test_a_record_has_one_final_decision_and_a_refused_one_is_never_approved(
    hub: Hub, take: Callable[..., Any]
) -> None:
    record = take()
    decide(reviewer(hub), record.id, "refuse", content_sha256=record.content_sha256, reason="men")
    # The record is refused: a decision written past the service finds it not waiting …
    refused_by_database(hub, insert(decisions).values(**_decision_values(record)))
    # … and had its state been put back by hand, it would not move, nor take a second final.
    refused_by_database(
        hub,
        update(review_records).where(review_records.c.id == record.id).values(state="pending"),
    )
    assert [d.outcome for d in decisions_of(hub, record.id)] == ["refuse"]


def test_a_second_approval_by_the_first_approver_is_refused_by_the_database(
    hub: Hub, add_region: Callable[..., MemberRegion], take: Callable[..., Any]
) -> None:
    add_region(A, "SE2321000131", "Västra Götalandsregionen", second_review_flagged=True)
    record = take(flags=Flags(objection=True))
    alice = reviewer_of(A)
    decide(reviewer(hub), record.id, "approve", content_sha256=record.content_sha256, reason="ok")
    same = _decision_values(
        record,
        step=2,
        reason="ok",
        reviewer_name=alice.name,
        reviewer_hsa_id=alice.hsa_id,
    )
    assert "another reviewer" in refused_by_database(hub, insert(decisions).values(**same))
    # The same HSA-id under another name is the same person.
    same.update(id=str(uuid.uuid4()), reviewer_name="Someone Else")
    refused_by_database(hub, insert(decisions).values(**same))
    assert row_of(hub, review_records, record.id).state == "second_review"


# --- review records: content fixed, state forward only, and only by a decision ----------------


def test_a_review_records_content_never_changes_and_it_is_never_deleted(
    hub: Hub, take: Callable[..., Any]
) -> None:
    record = take()
    other = take()
    for column, value in (
        ("content_enc", other.content_enc),
        ("content_sha256", other.content_sha256),
        ("pnr_enc", other.pnr_enc),
        ("to_lan", C),
        ("protected_identity", True),
        ("flagged", True),
        ("reference", "changed"),
        ("kind", "move"),
        ("summary", {}),
    ):
        message = refused_by_database(
            hub,
            update(review_records)
            .where(review_records.c.id == record.id)
            .values(**{column: value}),
        )
        assert "keeps the content" in message, column
    assert "never deleted" in refused_by_database(
        hub, delete(review_records).where(review_records.c.id == record.id)
    )
    assert row_of(hub, review_records, record.id) == record


def test_a_review_record_is_approved_or_refused_only_by_a_decision(
    hub: Hub, take: Callable[..., Any]
) -> None:
    record = take()
    for state in ("approved", "refused", "second_review", "superseded", "sent"):
        refused_by_database(
            hub,
            update(review_records).where(review_records.c.id == record.id).values(state=state),
        )
    # A row born decided would skip the review.
    values = dict(record._mapping)
    values.update(id=str(uuid.uuid4()), content_key=uuid.uuid4().hex, state="approved")
    assert "stored pending" in refused_by_database(hub, insert(review_records).values(**values))
    assert row_of(hub, review_records, record.id).state == "pending"


# --- the sender: it sends only what its approval covers ---------------------------------------


def test_matches_its_approval(hub: Hub, take: Callable[..., Any]) -> None:
    record, _, _ = approved(hub, take)
    scope = reviewer(hub)
    payload = approved_payload(scope, record)
    sha = record.content_sha256
    assert content_sha256(payload) == sha
    envelope = build_envelope(B, payload)
    assert matches_its_approval(envelope, sha, B)
    assert not matches_its_approval(envelope, None, B)
    assert not matches_its_approval(envelope, "0" * 64, B)
    # Addressed to another region than approved.
    assert not matches_its_approval(build_envelope(C, payload), sha, B)
    assert not matches_its_approval(envelope, sha, C)
    # Other content.
    other = take()
    other_envelope = build_envelope(B, approved_payload(scope, other))
    assert not matches_its_approval(other_envelope, sha, B)
    # The approved payload plus a smuggled second one, in the header or in the operation.
    smuggled = approved_payload(scope, other)
    for where in (f"{{{SOAP11_ENV_NS}}}Header", OPERATION_TAG):
        tree = etree.fromstring(envelope)
        tree.find(f".//{where}").append(copy.deepcopy(smuggled))
        assert not matches_its_approval(etree.tostring(tree), sha, B), where
        # The control: the same round trip without the smuggled element still matches.
        assert matches_its_approval(etree.tostring(etree.fromstring(envelope)), sha, B)
    assert not matches_its_approval(b"not xml", sha, B)


def test_the_sender_refuses_a_request_that_is_not_what_was_approved(
    hub: Hub,
    take: Callable[..., Any],
    platform: tuple[FakePlatform, LiveServer],
) -> None:
    fake, server = platform
    record, _, sent = approved(hub, take)
    other = take()
    scope = reviewer(hub)
    forged = build_envelope(B, approved_payload(scope, other))
    # The trigger refuses replacing a request; only a test (or an attacker with the database
    # owner's rights and the region's key) drops it first.
    trigger = "outbox_approval_fixed"
    execute(
        hub,
        text(
            f"DROP TRIGGER {trigger}"
            if hub.db.is_sqlite
            else f"DROP TRIGGER {trigger} ON region_{A}.outbox"
        ),
    )
    execute(
        hub,
        update(outbox)
        .where(outbox.c.id == sent.id)
        .values(request_enc=scope.cipher.seal(forged, "outbox-request")),
    )
    stats = run_senders_once(hub, settings_for(server.url))
    # Nothing went over the wire; the refusal is the record's last attempt, for people to see.
    assert fake.seen == [] and stats.by_code == {"NOT-APPROVED": 1}
    after = row_of(hub, outbox, sent.id)
    assert (after.state, after.fault_code) == ("failed", "NOT-APPROVED")
    assert record.state == "approved"


# --- bulk: a forged request with a flagged id approves nothing --------------------------------


def test_a_forged_bulk_request_with_a_flagged_id_approves_nothing(
    hub: Hub, take: Callable[..., Any]
) -> None:
    plain = [take() for _ in range(3)]
    hidden = take(flags=Flags(blocked=True))
    ids = [r.id for r in plain] + [hidden.id]
    with pytest.raises(DecisionRefused, match="flagged"):
        decide_bulk(reviewer(hub), ids, "approve")
    # The flag is re-read from the store: the request says nothing about it.
    with pytest.raises(DecisionRefused, match="flagged"):
        decide_bulk(reviewer(hub), list(reversed(ids)), "refuse", reason="all")
    with hub.db.region(A).connect() as connection:
        assert connection.execute(select(decisions.c.id)).all() == []
        assert connection.execute(select(outbox.c.id)).all() == []
        states = connection.execute(select(review_records.c.state)).scalars().all()
    assert set(states) == {"pending"}
    # The database refuses a bulk decision on a flagged record written past the service, too.
    assert "ck_decisions_flagged_not_bulk" in refused_by_database(
        hub,
        insert(decisions).values(
            **_decision_values(hidden, batch_id=str(uuid.uuid4()), batch_size=4, reason="bulk")
        ),
    )
