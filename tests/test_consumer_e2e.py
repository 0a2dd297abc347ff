"""End to end over real HTTP on loopback: outbox → sender → NTjP simulator → our producer.

One hub serves two member regions, A (14) and B (01). The simulator routes both län codes to the
hub's live server, so a record A approves for B leaves through the consumer side, crosses the
simulator as it would cross NTjP, and is stored by the producer side in B's store. Other län codes
route to the simulator's mock producer or to nothing, to provoke each fault of the platform
(docs/contract.md).
Every test runs on SQLite and on PostgreSQL. Personnummer are synthetic (or the mock's magic ones).
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import select

from hub.clock import swedish_today
from hub.context import Hub
from hub.contract.names import ENDPOINT_PATH, RESPONDER_NS
from hub.contract.parse import information_from_element, parse_request
from hub.contract.samples import sample_information
from hub.contract.serialise import information_to_element
from hub.db.region_tables import outbox
from hub.inbound.views import list_messages, read_body
from hub.ops.alerts import list_alerts
from hub.outbound.queue import resend
from hub.outbound.sender import Dispatcher, drain
from hub.outbound.settings import ConsumerSettings, DestinationPolicy
from hub.outbound.views import get_record, read_envelopes
from hub.sim import (
    MOCK_PNR_DELAY,
    MOCK_PNR_ERROR,
    MOCK_PNR_FAULT,
    MOCK_PNR_INFO,
    Authorisation,
    Route,
    RunningSim,
    SimConfig,
    serve_sim_in_thread,
)
from hub.sim.config import MOCK_SCHEME
from hub.tenancy.registry import MemberRegion
from tests.conftest import LiveServer, approve, scope_of

A, B = "14", "01"
AGENT = "SE0000000000-AGENTHUB"
PAYLOAD = f"{{{RESPONDER_NS}}}cervixScreeningInformation"

# Destinations of the fault tests (län codes that are not members of the test hub).
MOCK = "08"  # the mock producer: magic personnummer decide the answer
SLOW = "04"  # the mock behind a 0.2 s producer timeout at the platform: VP009
DEAD = "05"  # a producer URL nobody listens on: the platform answers VP009
NO_ROUTE = "06"  # no vägval: VP004
NOT_ALLOWED = "07"  # routed, but the agent has no anropsbehörighet: VP007


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sim_config(hub_url: str) -> SimConfig:
    """Routes and authorisations for every test destination (see the constants above)."""
    routes = (
        Route(A, RESPONDER_NS, hub_url),
        Route(B, RESPONDER_NS, hub_url),
        Route(MOCK, RESPONDER_NS, MOCK_SCHEME),
        Route(SLOW, RESPONDER_NS, MOCK_SCHEME, timeout_s=0.2),
        Route(DEAD, RESPONDER_NS, f"http://127.0.0.1:{closed_port()}/producer"),
        Route(NOT_ALLOWED, RESPONDER_NS, MOCK_SCHEME),
    )
    auths = tuple(
        Authorisation(AGENT, RESPONDER_NS, lan) for lan in (A, B, MOCK, SLOW, DEAD, NO_ROUTE)
    )
    return SimConfig(
        routes=routes,
        authorisations=auths,
        load_mocks=False,
        mock_delay_s=1.0,
        read_timeout_s=5.0,
        retry_pause_s=0.01,
    )


@pytest.fixture
def sim(
    live_server: LiveServer, regions_ab: tuple[MemberRegion, MemberRegion]
) -> Iterator[RunningSim]:
    """The simulator on loopback, routing A's and B's län codes to the hub's live server."""
    with serve_sim_in_thread(sim_config(live_server.url + ENDPOINT_PATH)) as running:
        yield running


def fast_settings(url: str, **policy: Any) -> ConsumerSettings:
    """Short pauses and timeouts so a test of five attempts takes well under a second."""
    values: dict[str, Any] = {
        "rate_per_s": 0,
        "max_attempts": 3,
        "pause_ms": 10,
        "backoff": 2.0,
        "timeout_ms": 3000,
        "connect_timeout_ms": 500,
    }
    values.update(policy)
    return ConsumerSettings(
        ntjp_url=url, agent_hsaid=AGENT, default_policy=DestinationPolicy(**values)
    )


@pytest.fixture
def consumer(sim: RunningSim) -> ConsumerSettings:
    """Consumer settings pointing at the simulator."""
    return fast_settings(sim.url)


def normal_form(element: etree._Element) -> Any:
    """Content of an element, blind to prefixes and indentation: (tag, attributes, text, kids)."""
    return (
        element.tag,
        tuple(sorted(element.attrib.items())),
        (element.text or "").strip(),
        tuple(normal_form(child) for child in element if isinstance(child.tag, str)),
    )


def stored_payloads(hub: Hub, lan: str) -> list[etree._Element]:
    """The cervixScreeningInformation elements a region's store holds, as received."""
    found = []
    for view in list_messages(scope_of(hub, lan, "test")):
        body = read_body(scope_of(hub, lan, "test"), view.id)
        assert body is not None
        element = parse_request(body).body_element.find(PAYLOAD)
        assert element is not None
        found.append(element)
    return found


def state_of(hub: Hub, lan: str, record_id: str) -> tuple[str, int, str | None, str | None]:
    """(state, attempts, result/fault code, text) of one outbox record."""
    found = get_record(scope_of(hub, lan, "test"), record_id)
    assert found is not None
    record, _ = found
    code = record.result_code or record.fault_code
    return record.state, record.attempts, code, record.result_text or record.last_error


def test_three_scenarios_from_a_arrive_identical_in_bs_store(
    hub: Hub, consumer: ConsumerSettings, make_pnr: Callable[[], str]
) -> None:
    today = swedish_today()
    sent = {}
    for scenario in ("move", "sample", "treatment"):
        info = sample_information(scenario, pnr=make_pnr(), sending_lan=A, today=today)
        element = information_to_element(info)
        queued = approve(hub, A, B, element)
        sent[queued.record_id] = element

    stats = drain(hub, consumer, timeout=30)

    assert (stats.calls, stats.delivered) == (3, 3)
    for record_id in sent:
        assert state_of(hub, A, record_id) == ("delivered", 1, "OK", None)
    received = stored_payloads(hub, B)
    assert sorted(map(normal_form, received), key=repr) == sorted(
        map(normal_form, sent.values()), key=repr
    )
    assert {information_from_element(e).kind for e in received} == {"move", "sample", "treatment"}
    # Nothing landed in A's own store, and B's outbox is empty: one direction, one region each.
    assert list_messages(scope_of(hub, A, "test")) == []


def test_scenarios_reach_the_home_regions_received_folder_unchanged(
    hub: Hub,
    consumer: ConsumerSettings,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    from hub.delivery.run import deliver_all
    from hub.jobs.config import load_job_settings

    today = swedish_today()
    sent = []
    for scenario in ("move", "sample", "treatment"):
        info = sample_information(scenario, pnr=make_pnr(), sending_lan=A, today=today)
        sent.append(information_to_element(info))
        approve(hub, A, B, sent[-1])
    drain(hub, consumer, timeout=30)

    reports = deliver_all(hub, load_job_settings({}), "test-worker")
    assert sum(r.delivered for r in reports) == 3
    folder = Path(regions_ab[1].drop_url or "") / "received"
    files = sorted(folder.glob("*.xml"))
    assert len(files) == 3
    arrived = [etree.fromstring(f.read_bytes()) for f in files]
    assert sorted(map(normal_form, arrived), key=repr) == sorted(map(normal_form, sent), key=repr)
    # A's drop received nothing: the records were B's to receive.
    assert not list((Path(regions_ab[0].drop_url or "") / "received").glob("*.xml"))


def test_the_call_carries_soapaction_correlation_id_and_the_logical_address(
    hub: Hub, consumer: ConsumerSettings, make_pnr: Callable[[], str]
) -> None:
    info = sample_information("sample", pnr=make_pnr(), sending_lan=B, today=swedish_today())
    queued = approve(hub, B, A, info)
    drain(hub, consumer, timeout=30)

    [view] = list_messages(scope_of(hub, A, "test"))
    # The platform passed our correlation id through to the producer, which stored it.
    assert view.correlation_id == queued.correlation_id
    envelopes = read_envelopes(scope_of(hub, B, "test"), queued.record_id)
    assert envelopes is not None
    request, responses = envelopes
    parsed = parse_request(request)
    assert parsed.logical_address == A
    assert len(responses) == 1 and responses[0] is not None
    assert b"<" in responses[0] and b"OK" in responses[0]
    found = get_record(scope_of(hub, B, "test"), queued.record_id)
    assert found is not None
    _, [attempt] = found
    assert attempt.correlation_id == queued.correlation_id
    assert attempt.http_status == 200


def test_a_resend_after_a_lost_answer_is_stored_once_at_the_receiver(
    hub: Hub, consumer: ConsumerSettings, make_pnr: Callable[[], str]
) -> None:
    info = sample_information("treatment", pnr=make_pnr(), sending_lan=A, today=swedish_today())
    queued = approve(hub, A, B, info)
    drain(hub, consumer, timeout=30)
    # As if the answer had been lost: the record goes round again with the same bytes.
    with hub.db.region(A).begin() as connection:
        connection.execute(
            outbox.update()
            .where(outbox.c.id == queued.record_id)
            .values(state="failed", attempts=1)
        )
    resend(scope_of(hub, A, "operator"), queued.record_id)
    drain(hub, consumer, timeout=30)

    assert state_of(hub, A, queued.record_id)[:3] == ("delivered", 1, "OK")
    assert len(list_messages(scope_of(hub, B, "test"))) == 1


@pytest.mark.parametrize(
    ("to_lan", "pnr", "expected"),
    [
        pytest.param(MOCK, MOCK_PNR_INFO, ("delivered", 1, "INFO"), id="INFO"),
        pytest.param(MOCK, MOCK_PNR_ERROR, ("refused", 1, "ERROR"), id="ERROR"),
        pytest.param(MOCK, MOCK_PNR_FAULT, ("failed", 3, "FAULT"), id="producer-fault"),
        pytest.param(SLOW, MOCK_PNR_DELAY, ("failed", 3, "VP009"), id="VP009-timeout"),
        pytest.param(DEAD, None, ("failed", 3, "VP009"), id="VP009-unreachable"),
        pytest.param(NO_ROUTE, None, ("failed", 1, "VP004"), id="VP004"),
        pytest.param(NOT_ALLOWED, None, ("failed", 1, "VP007"), id="VP007"),
    ],
)
def test_each_platform_answer_ends_in_the_right_state_after_the_right_attempts(
    hub: Hub,
    consumer: ConsumerSettings,
    make_pnr: Callable[[], str],
    to_lan: str,
    pnr: str | None,
    expected: tuple[str, int, str],
) -> None:
    info = sample_information("sample", pnr=pnr or make_pnr(), sending_lan=A, today=swedish_today())
    queued = approve(hub, A, to_lan, info)

    stats = drain(hub, consumer, timeout=30)

    state, attempts, code, text = state_of(hub, A, queued.record_id)
    assert (state, attempts, code) == expected
    assert stats.calls == attempts
    if state != "delivered":
        assert text  # the reason is shown, never empty
    alerts = [a for a in list_alerts(hub) if a.record_id == queued.record_id]
    if state == "delivered":
        assert alerts == []
    else:
        kind = {"refused": "refused", "failed": "configuration" if attempts == 1 else "exhausted"}
        assert [(a.kind, a.code, a.lan_code, a.to_lan) for a in alerts] == [
            (kind[state], code, A, to_lan)
        ]
    found = get_record(scope_of(hub, A, "test"), queued.record_id)
    assert found is not None
    assert [t.attempt for t in found[1]] == list(range(1, attempts + 1))


def test_our_own_timeout_counts_as_an_attempt_and_is_resent(
    hub: Hub, sim: RunningSim, make_pnr: Callable[[], str]
) -> None:
    # The mock sleeps 1 s for this number; we wait only 0.2 s.
    info = sample_information("sample", pnr=MOCK_PNR_DELAY, sending_lan=A, today=swedish_today())
    queued = approve(hub, A, MOCK, info)
    drain(hub, fast_settings(sim.url, timeout_ms=200), timeout=30)
    assert state_of(hub, A, queued.record_id)[:3] == ("failed", 3, "TIMEOUT")


def test_connection_refused_by_the_platform_is_resent_then_failed(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion], make_pnr: Callable[[], str]
) -> None:
    info = sample_information("sample", pnr=make_pnr(), sending_lan=A, today=swedish_today())
    queued = approve(hub, A, B, info)
    settings = fast_settings(f"http://127.0.0.1:{closed_port()}{ENDPOINT_PATH}")
    drain(hub, settings, timeout=30)
    assert state_of(hub, A, queued.record_id)[:3] == ("failed", 3, "CONNECT")


def test_pauses_grow_exponentially_between_attempts(
    hub: Hub, sim: RunningSim, make_pnr: Callable[[], str]
) -> None:
    info = sample_information("sample", pnr=MOCK_PNR_FAULT, sending_lan=A, today=swedish_today())
    queued = approve(hub, A, MOCK, info)
    drain(hub, fast_settings(sim.url, max_attempts=4, pause_ms=100, backoff=2.0), timeout=30)
    found = get_record(scope_of(hub, A, "test"), queued.record_id)
    assert found is not None
    starts = [t.started_at for t in found[1]]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3
    for gap, pause in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert pause <= gap < pause + 0.5


def test_receipts_are_written_to_the_sending_regions_drop(
    hub: Hub,
    consumer: ConsumerSettings,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    today = swedish_today()
    ok = approve(
        hub,
        A,
        B,
        sample_information("move", pnr=make_pnr(), sending_lan=A, today=today),
        reference="extract-1.csv:1",
    )
    refused = approve(
        hub,
        A,
        MOCK,
        sample_information("sample", pnr=MOCK_PNR_ERROR, sending_lan=A, today=today),
        reference="extract-1.csv:2",
    )
    drain(hub, consumer, timeout=30)

    folder = Path(regions_ab[0].drop_url or "") / "receipts"
    # Version 2: record_id is the id the region got at intake; the outbox id stands beside it.
    receipts = {json.loads(p.read_text())["record_id"]: p for p in folder.glob("*.json")}
    assert set(receipts) == {ok.review_record_id, refused.review_record_id}
    first = json.loads(receipts[ok.review_record_id].read_text())
    assert first["receipt_version"] == 2 and first["outbox_id"] == ok.record_id
    assert first["decision_id"] and first["decided_by"] and first["decided_at"]
    assert first["state"] == "delivered" and first["result_code"] == "OK"
    assert first["reference"] == "extract-1.csv:1" and first["to_lan"] == B
    assert first["subject"].endswith("-****")
    second = json.loads(receipts[refused.review_record_id].read_text())
    assert second["state"] == "refused" and second["result_text"]
    assert second["outbox_id"] == refused.record_id
    assert receipts[refused.review_record_id].name.endswith(
        f"_{refused.review_record_id}_refused.json"
    )
    # B's drop got no receipts of A's records.
    assert not list((Path(regions_ab[1].drop_url or "") / "receipts").glob("*"))


def test_two_dispatchers_never_send_the_same_record_twice(
    hub: Hub, consumer: ConsumerSettings, make_pnr: Callable[[], str]
) -> None:
    today = swedish_today()
    ids = [
        approve(
            hub,
            A,
            B,
            sample_information("sample", pnr=make_pnr(), sending_lan=A, today=today),
        ).record_id
        for _ in range(30)
    ]
    first, second = Dispatcher(hub, consumer), Dispatcher(hub, consumer)
    # Two workers started by mistake, racing over the same outbox.
    racers = [threading.Thread(target=d.run_once) for d in (first, second)]
    try:
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(60)
    finally:
        first.close()
        second.close()
    assert first.stats.calls + second.stats.calls == 30
    assert len(list_messages(scope_of(hub, B, "test"), limit=100)) == 30
    with hub.db.region(A).connect() as connection:
        attempts = connection.execute(select(outbox.c.attempts).where(outbox.c.id.in_(ids)))
        assert [row[0] for row in attempts] == [1] * 30
