"""The review as its services serve it: the queue, opening a record, decisions, the policy.

Region A (14) sends; region B (01) must never see A's records. Personas: Alice reviews for 14,
Bob views 14, Charlie reviews for 01, Olof is the agent's operator (metadata only). Every test
runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from hub.clock import as_utc, swedish_today, utcnow
from hub.context import Hub
from hub.contract.samples import Scenario, sample_information
from hub.db.region_tables import access_log, decisions, outbox, review_records
from hub.drops.state import Backoff
from hub.intake.service import take_in
from hub.outbound.receipts import write_receipts
from hub.outbound.sender import drain
from hub.review.decide import Decided, DecisionRefused, decide, decide_bulk, same_person
from hub.review.queue import QueueError, QueueFilter, list_queue
from hub.review.records import NO_FLAGS, Flags, Stored, Submission
from hub.review.views import open_record
from hub.tenancy.access import Actor, Forbidden, NotFound, Permission, RegionScope, Role
from hub.tenancy.access import region_scope as scope_for
from hub.tenancy.registry import MemberRegion
from tests.conftest import ALICE, BOB, CHARLIE, OLOF, LiveServer, scope_of, submit
from tests.test_consumer import FakePlatform, settings_for

A, B, C = "14", "01", "12"


@pytest.fixture
def platform() -> Iterator[tuple[FakePlatform, LiveServer]]:
    """A fake platform on loopback that answers OK and records every call."""
    fake = FakePlatform()
    server = LiveServer(fake)
    yield fake, server
    server.stop()


def alice(hub: Hub, permission: Permission = Permission.DECIDE) -> RegionScope:
    """Alice's scope of region A."""
    return scope_for(hub, ALICE, A, permission)


ANNA = Actor(
    kind="user",
    label="user:anna",
    name="Anna Alm",
    user_id=7,
    hsa_id="SE2321000131-A7",
    roles={A: frozenset({Role.REVIEWER})},
    auth_method="siths",
)


@pytest.fixture
def take(hub: Hub, regions_ab: Any, make_pnr: Callable[[], str]) -> Callable[..., Any]:
    """Take one record of region A in; return its review row."""

    def take_one(
        to: str = B,
        flags: Flags = NO_FLAGS,
        kind: Scenario = "sample",
        pnr: str | None = None,
        reference: str | None = None,
    ) -> Any:
        info = sample_information(kind, pnr=pnr or make_pnr(), sending_lan=A, today=swedish_today())
        stored = submit(hub, A, to, info, flags=flags, reference=reference)
        assert stored.outcome == "queued" and stored.record_id is not None
        return row(hub, stored.record_id)

    return take_one


def row(hub: Hub, record_id: str) -> Any:
    """A review record of region A."""
    with hub.db.region(A).connect() as connection:
        return connection.execute(
            select(review_records).where(review_records.c.id == record_id)
        ).one()


def log_of(hub: Hub, lan: str = A, action: str | None = None) -> list[Any]:
    """Region ``lan``'s access log, oldest first (only ``action`` if given)."""
    query = select(access_log).order_by(access_log.c.id)
    if action is not None:
        query = query.where(access_log.c.action == action)
    with hub.db.region(lan).connect() as connection:
        return list(connection.execute(query))


def approve(hub: Hub, record: Any, scope: RegionScope | None = None, **kw: Any) -> Decided:
    """Approve ``record`` on the content it has."""
    return decide(
        scope or alice(hub), record.id, "approve", content_sha256=record.content_sha256, **kw
    )


# --- the queue -----------------------------------------------------------------------------------


def test_the_queue_lists_what_a_decision_needs_with_the_personnummer_masked(
    hub: Hub, take: Callable[..., Any], make_pnr: Callable[[], str]
) -> None:
    pnr = make_pnr()
    record = take(pnr=pnr, flags=Flags(objection=True), kind="treatment", reference="x.csv:7")
    before = len(log_of(hub))
    page = list_queue(alice(hub, Permission.READ_METADATA))
    [item] = page.items
    assert page.next_after is None
    assert (item.id, item.state, item.to_lan, item.kind) == (record.id, "pending", B, "treatment")
    assert (item.objection, item.flagged, item.protected_identity, item.blocked) == (
        True,
        True,
        False,
        False,
    )
    assert (item.reference, item.line, item.intake_id) == ("x.csv:7", 1, record.intake_id)
    assert item.summary["follow_up_groups"] == 1 and item.summary["kind"] == "treatment"
    assert item.masked_pnr == f"{pnr[:8]}-****"
    assert pnr not in repr(page) and pnr[2:] not in repr(page)
    # A reviewer gets the hash a bulk decision sends back; an operator does not.
    assert item.content_sha256 == record.content_sha256
    [seen] = list_queue(scope_for(hub, OLOF, A, Permission.READ_METADATA)).items
    assert seen.content_sha256 is None and seen.masked_pnr == item.masked_pnr
    entries = log_of(hub)[before:]
    assert [e.action for e in entries] == ["records.listed", "records.listed"]
    first = entries[0]
    assert (first.actor, first.hsa_id, first.role, first.pnr_hash) == (
        "user:alice",
        ALICE.hsa_id,
        "reviewer",
        None,
    )
    assert "1 rows" in first.detail and "state=waiting" in first.detail


def test_the_queue_filters_by_destination_kind_flags_dates_and_intake(
    hub: Hub, take: Callable[..., Any], make_pnr: Callable[[], str]
) -> None:
    to_b = take(B, kind="sample")
    to_c = take(C, kind="move")
    protected = take(B, flags=Flags(protected_identity=True), kind="treatment")
    blocked = take(C, flags=Flags(blocked=True))
    decided = take(B)
    approve(hub, decided)
    today = swedish_today()
    batch = take_in(
        scope_of(hub, A, "test", Permission.SUBMIT),
        [
            Submission(C, sample_information("sample", pnr=make_pnr(), sending_lan=A, today=today))
            for _ in range(2)
        ],
        source="cli",
        name="batch",
    )
    in_batch = {r.record_id for r in batch.results if isinstance(r, Stored)}
    scope = alice(hub, Permission.READ_METADATA)

    def ids(**query: Any) -> set[str]:
        return {i.id for i in list_queue(scope, QueueFilter(**query)).items}

    waiting = {to_b.id, to_c.id, protected.id, blocked.id} | in_batch
    assert ids() == waiting
    assert ids(to_lan=B) == {to_b.id, protected.id}
    assert ids(to_lan=C) == {to_c.id, blocked.id} | in_batch
    assert ids(kind="move") == {to_c.id}
    assert ids(flagged=True) == {protected.id, blocked.id}
    assert ids(flagged=False) == {to_b.id, to_c.id} | in_batch
    assert ids(flag="blocked") == {blocked.id}
    assert ids(flag="protected_identity", to_lan=B) == {protected.id}
    assert ids(flag="objection") == set()
    assert ids(state="approved") == {decided.id}
    assert ids(state=None) == waiting | {decided.id}
    assert ids(intake_id=batch.intake_id) == in_batch
    assert ids(intake_id=batch.intake_id, to_lan=B) == set()
    assert ids(received_from=today) == waiting
    assert ids(received_before=today) == set()
    assert ids(received_from=today + timedelta(days=1)) == set()
    assert ids(received_before=utcnow() + timedelta(seconds=1)) == waiting
    with pytest.raises(NotFound):
        ids(intake_id="no-such-intake")
    with pytest.raises(NotFound):
        ids(extract_id="no-such-extract")


@pytest.mark.parametrize(
    "query",
    [
        QueueFilter(state="sent"),
        QueueFilter(to_lan="99"),
        QueueFilter(kind="gossip"),
        QueueFilter(flag="gossip"),  # type: ignore[arg-type]
        QueueFilter(flag="blocked", flagged=False),
    ],
)
def test_a_filter_that_makes_no_sense_is_refused(
    hub: Hub, regions_ab: Any, query: QueueFilter
) -> None:
    with pytest.raises(QueueError):
        list_queue(alice(hub, Permission.READ_METADATA), query)


def test_a_naive_time_a_bad_position_or_page_size_is_refused(hub: Hub, regions_ab: Any) -> None:
    scope = alice(hub, Permission.READ_METADATA)
    with pytest.raises(QueueError, match="time zone"):
        list_queue(scope, QueueFilter(received_from=utcnow().replace(tzinfo=None)))
    for after in ("not-a-cursor", "Zm9v", ""):
        with pytest.raises(QueueError, match="position"):
            list_queue(scope, after=after)
    for limit in (0, 501):
        with pytest.raises(QueueError, match="page"):
            list_queue(scope, limit=limit)


def test_the_queue_pages_by_keyset_without_gaps_or_repeats(
    hub: Hub, add_region: Callable[..., MemberRegion], take: Callable[..., Any]
) -> None:
    add_region(A, "SE2321000131", "Västra Götalandsregionen", second_review_flagged=True)
    records = [take(B) for _ in range(12)]
    flagged = take(C, flags=Flags(objection=True))
    # One record in second review: "waiting" reads both undecided states and merges them.
    approve(hub, flagged, reason="utan men")
    records.append(flagged)
    scope = alice(hub, Permission.READ_METADATA)
    default = list_queue(scope)
    assert len(default.items) == 13 and default.next_after is None
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = list_queue(scope, after=after, limit=5)
        seen += [i.id for i in page.items]
        pages += 1
        if pages == 2:
            # Deciding a record between pages moves nothing else: no gap, no repeat.
            approve(hub, records[0])
        if page.next_after is None:
            break
        after = page.next_after
    assert pages == 3
    assert seen == [r.id for r in sorted(records, key=lambda r: (r.created_at, r.id))]
    assert len(set(seen)) == 13
    # One access-log line per page.
    assert len(log_of(hub, action="records.listed")) == 1 + pages


def test_region_b_lists_nothing_of_region_a(hub: Hub, take: Callable[..., Any]) -> None:
    take()
    assert list_queue(scope_for(hub, CHARLIE, B, Permission.READ_METADATA)).items == []
    with pytest.raises(NotFound):
        scope_for(hub, CHARLIE, A, Permission.READ_METADATA)


# --- opening a record ----------------------------------------------------------------------------


def test_opening_a_record_returns_its_content_and_history_and_logs_one_line(
    hub: Hub,
    take: Callable[..., Any],
    make_pnr: Callable[[], str],
    platform: tuple[FakePlatform, LiveServer],
) -> None:
    _, server = platform
    pnr = make_pnr()
    record = take(pnr=pnr, kind="move", reference="x.csv:3")
    scope = alice(hub, Permission.READ_CONTENT)
    before = len(log_of(hub))
    opened = open_record(scope, record.id)
    assert len(log_of(hub)) == before + 1
    [entry] = log_of(hub)[before:]
    assert (entry.action, entry.message_id, entry.resource, entry.outcome) == (
        "record.opened",
        record.id,
        f"review_record/{record.id}",
        "ok",
    )
    assert (entry.pnr_hash, entry.masked_pnr) == (record.pnr_hash, f"{pnr[:8]}-****")
    assert (entry.actor, entry.user_id, entry.actor_name, entry.hsa_id) == (
        "user:alice",
        None,
        ALICE.name,
        ALICE.hsa_id,
    )
    assert opened.personnummer == pnr and opened.masked_pnr == f"{pnr[:8]}-****"
    assert opened.information.subject_of_care.person_id.extension == pnr
    assert opened.information.planned_invitation is not None
    assert opened.content_sha256 == record.content_sha256
    assert pnr.encode() in opened.content_xml
    assert (opened.state, opened.to_lan, opened.kind, opened.reference) == (
        "pending",
        B,
        "move",
        "x.csv:3",
    )
    assert opened.intake.id == record.intake_id and opened.intake.actor == "test"
    assert opened.decisions == () and opened.sent is None and opened.superseded_by is None

    # The history grows: the decision, the sending, its attempts and receipt.
    decided = approve(hub, record)
    drain(hub, settings_for(server.url), timeout=20)
    opened = open_record(scope, record.id)
    [decision] = opened.decisions
    assert (decision.id, decision.outcome, decision.final, decision.reviewer_name) == (
        decided.decision_id,
        "approve",
        True,
        ALICE.name,
    )
    assert opened.sent is not None
    assert (opened.sent.id, opened.sent.state, opened.sent.attempts) == (
        decided.outbox_id,
        "delivered",
        1,
    )
    assert [t.code for t in opened.sent.tries] == ["OK"]
    assert opened.sent.receipt_name is not None
    # A viewer reads content too, and is logged.
    assert open_record(scope_for(hub, BOB, A, Permission.READ_CONTENT), record.id).id == record.id
    assert [e.actor for e in log_of(hub, action="record.opened")][-1] == "user:bob"


def test_opening_without_the_right_or_an_unknown_id_is_refused_and_logged(
    hub: Hub, take: Callable[..., Any]
) -> None:
    record = take()
    before = len(log_of(hub))
    with pytest.raises(Forbidden):
        open_record(scope_for(hub, OLOF, A, Permission.READ_METADATA), record.id)
    with pytest.raises(NotFound):
        open_record(alice(hub, Permission.READ_CONTENT), "no-such-record")
    denied = log_of(hub)[before:]
    assert [(e.action, e.outcome, e.actor) for e in denied] == [
        ("record.opened", "denied", "user:olof"),
        ("record.opened", "denied", "user:alice"),
    ]
    assert all(e.pnr_hash is None and e.masked_pnr is None for e in denied)


def test_another_regions_ids_answer_not_found(
    hub: Hub, take: Callable[..., Any], make_pnr: Callable[[], str]
) -> None:
    ours = take()
    info = sample_information("sample", pnr=make_pnr(), sending_lan=B, today=swedish_today())
    theirs = submit(hub, B, A, info)
    assert theirs.record_id is not None
    scope = alice(hub)
    with pytest.raises(NotFound):
        open_record(scope, theirs.record_id)
    with pytest.raises(NotFound):
        decide(scope, theirs.record_id, "approve", content_sha256=ours.content_sha256)
    with pytest.raises(NotFound):
        decide_bulk(scope, [ours.id, theirs.record_id], "approve")
    charlie = scope_for(hub, CHARLIE, B, Permission.DECIDE)
    with pytest.raises(NotFound):
        open_record(charlie, ours.id)
    with pytest.raises(NotFound):
        decide(charlie, ours.id, "approve", content_sha256=ours.content_sha256)
    assert row(hub, ours.id).state == "pending"
    # B's log holds B's own refused attempts, A's holds nothing of B's reviewer.
    assert all(e.actor != "user:charlie" for e in log_of(hub, A))


def test_a_superseded_record_shows_who_superseded_it(
    hub: Hub, take: Callable[..., Any], make_pnr: Callable[[], str]
) -> None:
    pnr = make_pnr()
    old = take(pnr=pnr, kind="sample")
    info = sample_information("move", pnr=pnr, sending_lan=A, today=swedish_today())
    newer = take_in(
        scope_for(hub, ANNA_SUBMITTER, A, Permission.SUBMIT),
        [Submission(B, info)],
        source="form",
        name="hand-entered",
    )
    [stored] = newer.results
    assert isinstance(stored, Stored) and stored.superseded == (old.id,)
    scope = alice(hub, Permission.READ_CONTENT)
    opened = open_record(scope, old.id)
    assert opened.state == "superseded" and opened.superseded_by is not None
    assert opened.superseded_by.record_id == stored.record_id
    assert (opened.superseded_by.intake.actor, opened.superseded_by.intake.source) == (
        "user:anna-submitter",
        "form",
    )
    assert stored.record_id is not None
    assert open_record(scope, stored.record_id).supersedes == (old.id,)
    # A superseded record is decided by nobody.
    with pytest.raises(DecisionRefused, match="superseded"):
        approve(hub, old)


ANNA_SUBMITTER = Actor(
    kind="user",
    label="user:anna-submitter",
    name="Anna Submitter",
    hsa_id="SE2321000131-S1",
    roles={A: frozenset({Role.SUBMITTER})},
    auth_method="password+totp",
)


# --- decisions -----------------------------------------------------------------------------------


def test_every_decision_is_complete_and_immutable_in_the_store(
    hub: Hub, take: Callable[..., Any]
) -> None:
    one = take(B)
    flagged = take(C, flags=Flags(protected_identity=True, objection=True))
    many = [take(B), take(C)]
    scope = scope_for(hub, ANNA, A, Permission.DECIDE)
    single = approve(hub, one, scope, request_id="req-1")
    refused = decide(
        scope, flagged.id, "refuse", content_sha256=flagged.content_sha256, reason="skyddad"
    )
    bulk = decide_bulk(scope, [r.id for r in many], "approve", request_id="req-2")
    with hub.db.region(A).connect() as connection:
        rows = {d.record_id: d for d in connection.execute(select(decisions))}
    first = rows[one.id]
    assert (first.id, first.content_sha256, first.to_lan, first.outcome, first.final) == (
        single.decision_id,
        one.content_sha256,
        B,
        "approve",
        True,
    )
    assert (first.reviewer_user_id, first.reviewer_name, first.reviewer_hsa_id) == (
        7,
        "Anna Alm",
        "SE2321000131-A7",
    )
    assert (first.reviewer_role, first.auth_method, first.request_id) == (
        "reviewer",
        "siths",
        "req-1",
    )
    assert (first.batch_id, first.batch_size, first.step) == (None, None, 1)
    assert first.decided_at is not None
    second = rows[flagged.id]
    assert (second.protected_identity, second.blocked, second.objection) == (True, False, True)
    assert (second.outcome, second.reason, second.id) == ("refuse", "skyddad", refused.decision_id)
    batch = {rows[r.id].batch_id for r in many}
    assert batch == {bulk[0].batch_id} and {rows[r.id].batch_size for r in many} == {2}
    assert {rows[r.id].request_id for r in many} == {"req-2"}
    # Each decision is in the access log under the reviewer, with the woman's keyed hash.
    decided = log_of(hub, action="record.approved") + log_of(hub, action="record.refused")
    assert {e.message_id for e in decided} == {one.id, flagged.id, *(r.id for r in many)}
    assert all(e.pnr_hash and e.masked_pnr and e.actor == "user:anna" for e in decided)


def test_flagged_records_need_an_individual_decision_with_a_reason(
    hub: Hub, take: Callable[..., Any]
) -> None:
    flagged = take(flags=Flags(blocked=True))
    plain = take()
    with pytest.raises(DecisionRefused, match="reason"):
        approve(hub, flagged)
    with pytest.raises(DecisionRefused, match="reason"):
        decide(alice(hub), plain.id, "refuse", content_sha256=plain.content_sha256)
    with pytest.raises(DecisionRefused, match="reason"):
        decide_bulk(alice(hub), [plain.id], "refuse")
    with pytest.raises(DecisionRefused, match="flagged"):
        decide_bulk(alice(hub), [plain.id, flagged.id], "approve", reason="alla")
    assert (row(hub, flagged.id).state, row(hub, plain.id).state) == ("pending", "pending")
    assert approve(hub, flagged, reason="ingen men").state == "approved"


def test_a_decision_on_content_not_shown_is_refused(hub: Hub, take: Callable[..., Any]) -> None:
    record = take()
    other = take()
    with pytest.raises(DecisionRefused, match="content shown"):
        decide(alice(hub), record.id, "approve", content_sha256=other.content_sha256)
    with pytest.raises(DecisionRefused, match="content shown"):
        decide_bulk(
            alice(hub),
            [record.id, other.id],
            "approve",
            content_sha256s={record.id: record.content_sha256, other.id: record.content_sha256},
        )
    with pytest.raises(DecisionRefused, match="hash"):
        decide_bulk(alice(hub), [record.id, other.id], "approve", content_sha256s={record.id: "x"})
    assert (row(hub, record.id).state, row(hub, other.id).state) == ("pending", "pending")
    decided = decide_bulk(
        alice(hub),
        [record.id, other.id],
        "approve",
        content_sha256s={record.id: record.content_sha256, other.id: other.content_sha256},
    )
    assert [d.state for d in decided] == ["approved", "approved"]


def test_content_changed_after_a_decision_needs_a_new_decision(
    hub: Hub, take: Callable[..., Any], make_pnr: Callable[[], str]
) -> None:
    pnr = make_pnr()
    first = take(pnr=pnr, kind="sample")
    approved = approve(hub, first)
    # New content for the same woman after the decision: a new record, waiting for its own.
    second = take(pnr=pnr, kind="move")
    assert second.id != first.id and second.state == "pending"
    assert row(hub, first.id).state == "approved"
    with pytest.raises(DecisionRefused, match="content shown"):
        decide(alice(hub), second.id, "approve", content_sha256=first.content_sha256)
    with hub.db.region(A).connect() as connection:
        queued = connection.execute(select(outbox.c.id, outbox.c.review_record_id)).all()
    assert [tuple(q) for q in queued] == [(approved.outbox_id, first.id)]
    assert approve(hub, second).outbox_id not in (None, approved.outbox_id)


def test_decisions_are_taken_by_a_person_who_signed_in(hub: Hub, take: Callable[..., Any]) -> None:
    record = take()
    with pytest.raises(Forbidden, match="signed-in reviewer"):
        approve(hub, record, scope_of(hub, A, "cli:root", Permission.DECIDE))
    unknown = dataclasses.replace(ALICE, auth_method=None)
    with pytest.raises(Forbidden, match="signed in"):
        approve(hub, record, scope_for(hub, unknown, A, Permission.DECIDE))
    with pytest.raises(Forbidden):
        scope_for(hub, BOB, A, Permission.DECIDE)
    with pytest.raises(Forbidden):
        scope_for(hub, OLOF, A, Permission.DECIDE)
    with pytest.raises(DecisionRefused, match="approve or refuse"):
        decide(alice(hub), record.id, "maybe", content_sha256=record.content_sha256)  # type: ignore[arg-type]
    assert row(hub, record.id).state == "pending"


def test_a_region_may_require_a_second_reviewer_for_flagged_records(
    hub: Hub, add_region: Callable[..., MemberRegion], take: Callable[..., Any]
) -> None:
    add_region(A, "SE2321000131", "Västra Götalandsregionen", second_review_flagged=True)
    flagged = take(flags=Flags(protected_identity=True))
    plain = take()
    first = approve(hub, flagged, reason="ingen men")
    assert (first.final, first.state, first.outbox_id) == (False, "second_review", None)
    assert approve(hub, plain).state == "approved"  # the policy is for flagged records
    # The same person again, under another login with the same HSA-id: refused.
    again = dataclasses.replace(ANNA, hsa_id=ALICE.hsa_id, name="Alice A.", user_id=None)
    for actor in (ALICE, again):
        with pytest.raises(DecisionRefused, match="another reviewer"):
            approve(hub, flagged, scope_for(hub, actor, A, Permission.DECIDE), reason="ok")
    assert row(hub, flagged.id).state == "second_review"
    second = approve(hub, flagged, scope_for(hub, ANNA, A, Permission.DECIDE), reason="ok")
    assert (second.final, second.state) == (True, "approved") and second.outbox_id is not None
    steps = [
        (d.step, d.final, d.reviewer_name) for d in open_record(alice(hub), flagged.id).decisions
    ]
    assert steps == [(1, False, ALICE.name), (2, True, ANNA.name)]

    # The first reviewer may still withhold a record waiting for the second.
    other = take(flags=Flags(objection=True))
    approve(hub, other, reason="ingen men")
    refused = decide(
        alice(hub), other.id, "refuse", content_sha256=other.content_sha256, reason="ångrar"
    )
    assert (refused.state, refused.final, refused.outbox_id) == ("refused", True, None)

    # Without the policy a flagged record is approved by one reviewer.
    add_region(A, "SE2321000131", "Västra Götalandsregionen", second_review_flagged=False)
    alone = take(flags=Flags(blocked=True))
    assert approve(hub, alone, reason="ingen men").state == "approved"


def test_same_person() -> None:
    assert same_person(1, None, "A", 1, None, "B")
    assert same_person(None, "H", "A", 2, "H", "B")
    assert same_person(None, None, "A", None, None, "A")
    assert not same_person(1, "H1", "A", 2, "H2", "A")
    assert not same_person(None, None, "A", None, None, "B")
    assert not same_person(1, None, "A", None, None, "A")


def race(hub: Hub, record: Any) -> list[Decided | DecisionRefused]:
    """Alice approves and Anna refuses ``record`` at the same moment; what each got."""
    outcomes: list[Decided | DecisionRefused] = []
    start = threading.Barrier(2)

    def run(actor: Actor, outcome: Any) -> None:
        scope = scope_for(hub, actor, A, Permission.DECIDE)
        start.wait()
        try:
            outcomes.append(
                decide(
                    scope,
                    record.id,
                    outcome,
                    content_sha256=record.content_sha256,
                    reason="menprövning",
                )
            )
        except DecisionRefused as exc:
            outcomes.append(exc)

    threads = [
        threading.Thread(target=run, args=(ALICE, "approve")),
        threading.Thread(target=run, args=(ANNA, "refuse")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


def test_two_reviewers_deciding_one_record_at_once_one_decision_stands(
    hub: Hub, take: Callable[..., Any]
) -> None:
    for _ in range(3):
        record = take()
        outcomes = race(hub, record)
        won = [o for o in outcomes if isinstance(o, Decided)]
        lost = [o for o in outcomes if isinstance(o, DecisionRefused)]
        assert len(won) == 1 and len(lost) == 1, outcomes
        assert "meanwhile" in str(lost[0]) or "not waiting" in str(lost[0])
        with hub.db.region(A).connect() as connection:
            made = connection.execute(
                select(decisions.c.outcome).where(decisions.c.record_id == record.id)
            ).all()
            sent = connection.execute(
                select(outbox.c.id).where(outbox.c.review_record_id == record.id)
            ).all()
        assert [m[0] for m in made] == [won[0].outcome]
        assert len(sent) == (1 if won[0].outcome == "approve" else 0)
        assert row(hub, record.id).state == won[0].state


def test_a_region_whose_agreement_ended_decides_nothing(
    hub: Hub, add_region: Callable[..., MemberRegion], take: Callable[..., Any]
) -> None:
    record = take()
    add_region(A, "SE2321000131", "Västra Götalandsregionen", active_to=date.today() - timedelta(1))
    with pytest.raises(DecisionRefused, match="agreement"):
        approve(hub, record)
    assert row(hub, record.id).state == "pending"


# --- withheld receipts ---------------------------------------------------------------------------


def test_a_refused_record_gets_a_withheld_receipt_and_is_never_sent(
    hub: Hub,
    take: Callable[..., Any],
    make_pnr: Callable[[], str],
    platform: tuple[FakePlatform, LiveServer],
) -> None:
    fake, server = platform
    pnr = make_pnr()
    refused = take(pnr=pnr, reference="x.csv:9", flags=Flags(objection=True))
    sent = take(reference="x.csv:10")
    refusal = decide(
        scope_for(hub, ANNA, A, Permission.DECIDE),
        refused.id,
        "refuse",
        content_sha256=refused.content_sha256,
        reason="hon motsätter sig",
    )
    approval = approve(hub, sent)
    # The worker's receipts job (drain ends with it) writes both kinds.
    drain(hub, settings_for(server.url), timeout=20)
    assert len(fake.seen) == 1
    folder = hub.settings.data_dir.parent / "drops" / A / "receipts"
    files = {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")}
    [(name, withheld)] = [(n, d) for n, d in files.items() if d["state"] == "withheld"]
    assert name.endswith(f"_{refused.id}_withheld.json")
    assert withheld == {
        "receipt_version": 2,
        "record_id": refused.id,
        "outbox_id": None,
        "decision_id": refusal.decision_id,
        "reference": "x.csv:9",
        "correlation_id": None,
        "from_lan": A,
        "to_lan": B,
        "kind": "sample",
        "subject": f"{pnr[:8]}-****",
        "state": "withheld",
        "result_code": None,
        "result_text": None,
        "fault_code": None,
        "last_error": None,
        "attempts": 0,
        "decided_by": ANNA.hsa_id,
        "decided_at": withheld["final_at"],
        "queued_at": as_utc(refused.created_at).isoformat(),
        "final_at": withheld["decided_at"],
    }
    # No reason in the receipt: a reviewer's words may name things the drop must not hold.
    assert "motsätter" not in json.dumps(files, ensure_ascii=False)
    [delivered] = [d for d in files.values() if d["state"] == "delivered"]
    assert (delivered["record_id"], delivered["outbox_id"]) == (sent.id, approval.outbox_id)
    opened = open_record(alice(hub, Permission.READ_CONTENT), refused.id)
    assert opened.receipt_name == name and opened.receipt_at is not None
    # Written once: a second run owes nothing.
    assert write_receipts(hub, Backoff()) == 0
    assert len(list(folder.glob("*.json"))) == 2


def test_cli_region_add_sets_the_second_reviewer_policy(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli import main
    from hub.tenancy.registry import get_region

    for key, value in {
        "AGENTHUB_ENV": "test",
        "AGENTHUB_DATA_DIR": str(hub.settings.data_dir),
        "AGENTHUB_DATABASE_URL": hub.settings.database_url,
    }.items():
        monkeypatch.setenv(key, value)
    common = ["--agreement-signed", "2026-01-01", "--platform-confirmed", "2026-01-02"]
    assert main(["region", "add", "--lan", A, "--hsa-id", "SE2321000131", "--name", "VGR"]) == 0
    assert "second reviewer" not in capsys.readouterr().out
    args = ["region", "add", "--lan", B, "--hsa-id", "SE2321000016", "--name", "Sthlm", *common]
    assert main([*args, "--second-reviewer-for-flagged"]) == 0
    assert "flagged records need a second reviewer" in capsys.readouterr().out
    with hub.db.hub.connect() as connection:
        policies = {lan: get_region(connection, lan) for lan in (A, B)}
    assert {lan: r.second_review_flagged for lan, r in policies.items() if r} == {
        A: False,
        B: True,
    }
    assert main(["region", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert "2 if flagged" in next(line for line in listing if line.startswith(B))
    assert "2 if flagged" not in next(line for line in listing if line.startswith(A))
