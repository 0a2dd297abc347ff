"""The consumer side piece by piece: settings, answer classification, rate cap, outbox, senders.

A tiny fake platform (a WSGI app on loopback that records what it gets and answers what the test
asks) stands in for NTjP where the test is about our side of the wire; the full path through
the simulator is in ``test_consumer_e2e.py``. Database tests run on SQLite and PostgreSQL.
Personas: region A (14) sends; region B (01) must never see A's outbox.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import select, text
from werkzeug.wrappers import Request, Response

from hub.cli import main
from hub.clock import swedish_today
from hub.config import ConfigError
from hub.context import Hub
from hub.contract.names import ENDPOINT_PATH, HDR_CORRELATION_ID, RESPONDER_NS, SOAP_ACTION
from hub.contract.parse import parse_request
from hub.contract.samples import sample_information
from hub.contract.serialise import build_response_envelope, information_to_element
from hub.db.hub_tables import operator_audit
from hub.db.region_tables import outbox, review_records
from hub.intake.service import IntakeRefused, take_in
from hub.jobs.config import JobSettings
from hub.jobs.worker import add_jobs
from hub.ops.alerts import list_alerts
from hub.outbound import client as client_module
from hub.outbound.client import build_envelope, classify_response
from hub.outbound.queue import claim, resend
from hub.outbound.sender import Dispatcher, RateLimiter, drain, run_senders_once
from hub.outbound.settings import (
    DEV_CONSUMER_HEADER,
    ConsumerSettings,
    DestinationPolicy,
    load_consumer_settings,
)
from hub.outbound.states import OutboxError
from hub.outbound.views import get_record, list_outbox
from hub.review.decide import decide, decide_bulk
from hub.review.records import RecordRefused, Stored, Submission
from hub.sim.faults import VpCode, VpFault, fault_body, soap_fault
from hub.tenancy.access import NotFound, Permission, region_scope
from hub.tenancy.registry import MemberRegion
from tests.conftest import (
    LiveServer,
    TricklingServer,
    approve,
    http_head,
    reviewer_of,
    scope_of,
    submit,
)

A, B, C = "14", "01", "12"
PAYLOAD = f"{{{RESPONDER_NS}}}cervixScreeningInformation"
DATA = Path(__file__).parent / "data" / "contract"


# --- a fake platform -----------------------------------------------------------------------------


@dataclass
class Seen:
    """One request the fake platform received."""

    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class FakePlatform:
    """Answers every call with ``answer(body)`` → (status, body, content type)."""

    answer: Callable[[bytes], tuple[int, bytes, str]] = lambda _b: (
        200,
        build_response_envelope("OK", None),
        "text/xml",
    )
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_data()
        with self.lock:
            self.seen.append(Seen(dict(request.headers), body, time.monotonic()))
        status, data, content_type = self.answer(body)
        return Response(data, status, content_type=content_type)(environ, start_response)

    def pnrs(self) -> list[str]:
        """Personnummer of the calls, in arrival order."""
        return [
            parse_request(s.body).body_element.findtext(".//{*}extension") or "" for s in self.seen
        ]


@pytest.fixture
def platform() -> Iterator[tuple[FakePlatform, LiveServer]]:
    """A fake platform on loopback."""
    fake = FakePlatform()
    server = LiveServer(fake)
    yield fake, server
    server.stop()


def settings_for(url: str, **policy: Any) -> ConsumerSettings:
    """Consumer settings with short pauses (tests) and no cap unless asked."""
    values: dict[str, Any] = {
        "rate_per_s": 0,
        "max_attempts": 3,
        "pause_ms": 10,
        "timeout_ms": 3000,
    }
    values.update(policy)
    return ConsumerSettings(
        ntjp_url=url + ENDPOINT_PATH, default_policy=DestinationPolicy(**values)
    )


def queue(
    hub: Hub, make_pnr: Callable[[], str], lan: str = A, to: str = B, n: int = 1, **kw: Any
) -> list[str]:
    """Queue ``n`` valid sample records from ``lan`` to ``to``; return their ids."""
    today = swedish_today()
    return [
        approve(
            hub,
            lan,
            to,
            sample_information("sample", pnr=make_pnr(), sending_lan=lan, today=today),
            **kw,
        ).record_id
        for _ in range(n)
    ]


# --- settings ------------------------------------------------------------------------------------


def test_default_policy_is_the_contracts() -> None:
    settings = load_consumer_settings({})
    policy = settings.policy(B)
    assert policy.rate_per_s == 10 and policy.pause_ms == 5000 and policy.backoff == 2
    assert [policy.pause_before(n) for n in (1, 2, 3, 4)] == [0, 5.0, 10.0, 20.0]
    assert settings.dev_identity_header == DEV_CONSUMER_HEADER
    assert settings.ntjp_url.startswith("http://127.0.0.1:")


def test_pauses_are_capped() -> None:
    policy = DestinationPolicy(pause_ms=1000, backoff=10, max_pause_ms=30_000)
    assert policy.pause_before(5) == 30.0


def test_per_destination_overrides_apply_to_that_destination_only() -> None:
    settings = load_consumer_settings(
        {
            "AGENTHUB_SEND_MAX_ATTEMPTS": "4",
            "AGENTHUB_DEST_01_MAX_ATTEMPTS": "2",
            "AGENTHUB_DEST_01_TIMEOUT_MS": "900",
        }
    )
    assert (settings.policy("01").max_attempts, settings.policy("01").timeout_ms) == (2, 900)
    assert settings.policy("14").max_attempts == 4


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"AGENTHUB_SEND_RATE": "fast"}, "AGENTHUB_SEND_RATE"),
        ({"AGENTHUB_SEND_MAX_ATTEMPTS": "0"}, "AGENTHUB_SEND_MAX_ATTEMPTS"),
        ({"AGENTHUB_DEST_99_RATE": "5"}, "AGENTHUB_DEST_99_RATE"),
        ({"AGENTHUB_SEND_BACKOFF": "0.5"}, "AGENTHUB_SEND_BACKOFF"),
        ({"AGENTHUB_NTJP_URL": "ftp://x"}, "AGENTHUB_NTJP_URL"),
        ({"AGENTHUB_NTJP_CLIENT_CERT": "/nonexistent.pem"}, "AGENTHUB_NTJP_CLIENT_CERT"),
        ({"AGENTHUB_AGENT_HSAID": "nobody"}, "AGENTHUB_AGENT_HSAID"),
        ({"AGENTHUB_ENV": "prod"}, "AGENTHUB_NTJP_CLIENT_CERT"),
    ],
)
def test_bad_settings_fail_loudly_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load_consumer_settings(env)


def test_production_uses_the_certificate_and_never_the_dev_header(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / n for n in ("agent.pem", "agent.key", "ca.pem"))
    for path in (cert, key, ca):
        path.write_text("x")
    settings = load_consumer_settings(
        {
            "AGENTHUB_ENV": "prod",
            "AGENTHUB_NTJP_URL": "https://ntjp.example/x",
            "AGENTHUB_NTJP_CLIENT_CERT": str(cert),
            "AGENTHUB_NTJP_CLIENT_KEY": str(key),
            "AGENTHUB_NTJP_CA_BUNDLE": str(ca),
            "AGENTHUB_AGENT_HSAID": "SE1234567890-HUB",
        }
    )
    assert (settings.client_cert, settings.client_key, settings.ca_bundle) == (cert, key, ca)
    assert settings.dev_identity_header is None
    session = client_module.NtjpClient(settings)._session()
    assert session.cert == (str(cert), str(key)) and session.verify == str(ca)
    assert DEV_CONSUMER_HEADER not in session.headers and session.trust_env is False


# --- classification of answers (rule #22) --------------------------------------------------------


def vp(code: VpCode) -> bytes:
    return fault_body(VpFault(code, "detail"), "NTjP SIM")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, build_response_envelope("OK", None), ("delivered", "OK")),
        (200, build_response_envelope("INFO", "planned date in the past"), ("delivered", "INFO")),
        (200, build_response_envelope("ERROR", "bad personnummer"), ("refused", "ERROR")),
        (500, vp(VpCode.VP009), ("retry", "VP009")),
        *[
            (500, vp(c), ("config", c.name))
            for c in (
                VpCode.VP002,
                VpCode.VP003,
                VpCode.VP004,
                VpCode.VP006,
                VpCode.VP007,
                VpCode.VP011,
                VpCode.VP013,
                VpCode.VP015,
            )
        ],
        (500, vp(VpCode.VP014), ("config", "VP014")),
        (500, soap_fault("soap:Server", "VP010 [x] Internt fel"), ("config", "VP010")),
        (500, soap_fault("soap:Server", "database down"), ("retry", "FAULT")),
        (500, soap_fault("soap:Client", "not SOAP"), ("config", "FAULT-CLIENT")),
        (503, b"<html>Service Unavailable</html>", ("retry", "HTTP503")),
        (502, b"", ("retry", "HTTP502")),
        (404, b"Not Found", ("config", "HTTP404")),
        (200, b"<html>login</html>", ("retry", "UNREADABLE")),
        (200, b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>", ("retry", "UNREADABLE")),
    ],
)
def test_answers_are_classified_as_rule_22_says(
    status: int, body: bytes, expected: tuple[str, str]
) -> None:
    outcome, code, text = classify_response(status, body)
    assert (outcome, code) == expected
    if outcome != "delivered" or code == "INFO":
        assert text


def test_texts_from_the_other_side_are_masked() -> None:
    body = build_response_envelope("ERROR", "person 196201209985 is unknown")
    _, _, text = classify_response(200, body)
    assert text is not None and "196201209985" not in text and "19620120-****" in text


# --- rate limiter --------------------------------------------------------------------------------


def test_rate_limiter_spaces_permits_evenly_and_never_bursts_after_idle() -> None:
    now = [100.0]
    limiter = RateLimiter(10, clock=lambda: now[0])
    assert [round(limiter.reserve(), 3) for _ in range(3)] == [0.0, 0.1, 0.2]
    now[0] += 10  # idle for a long time: the schedule restarts, no burst
    assert [round(limiter.reserve(), 3) for _ in range(2)] == [0.0, 0.1]
    now[0] += 0.25  # the caller of the next slot (110.2) comes 0.05 late: the schedule holds
    assert [round(limiter.reserve(), 3) for _ in range(2)] == [0.0, 0.05]
    now[0] += 0.45  # 0.3 s late (a stall): the missed slots are caught up, never run ahead
    assert [round(limiter.reserve(), 3) for _ in range(5)] == [0.0, 0.0, 0.0, 0.0, 0.1]
    assert RateLimiter(0).reserve() == 0.0


def test_rate_cap_holds_through_the_sender(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
) -> None:
    fake, server = platform
    queue(hub, make_pnr, n=11)
    stats = run_senders_once(hub, settings_for(server.url, rate_per_s=20))
    assert stats.delivered == 11
    times = [s.at for s in fake.seen]
    assert times[-1] - times[0] >= 10 / 20 * 0.95
    # Never ahead of the schedule: call k starts no earlier than k intervals after the first
    # (arrival times jitter a little with thread scheduling).
    assert all(t - times[0] >= k / 20 - 0.02 for k, t in enumerate(times))


def test_regions_share_a_destination_fairly(
    hub: Hub,
    add_region: Callable[..., MemberRegion],
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
) -> None:
    (
        add_region(A, "SE2321000131", "A"),
        add_region(C, "SE2321000255", "C"),
        add_region(B, "SE2321000016", "B"),
    )
    fake, server = platform
    big = queue(hub, make_pnr, lan=A, n=30)
    small = queue(hub, make_pnr, lan=C, n=5)
    _ = big
    run_senders_once(hub, settings_for(server.url, rate_per_s=200, concurrency=1))
    senders = [
        parse_request(s.body).body_element.findtext(
            ".//{*}sendingRegion/{*}region/{*}id/{*}extension"
        )
        for s in fake.seen
    ]
    assert len(senders) == 35
    # C's five records went out among the first ten calls, not after A's thirty.
    assert senders[:10].count("SE2321000255") == 5
    assert len(small) == 5


# --- on the wire ---------------------------------------------------------------------------------


def test_the_request_carries_soapaction_correlation_id_identity_and_logical_address(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
) -> None:
    fake, server = platform
    info = sample_information("move", pnr=make_pnr(), sending_lan=A, today=swedish_today())
    queued = approve(hub, A, B, info)
    run_senders_once(hub, settings_for(server.url))
    [seen] = fake.seen
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert headers["soapaction"] == f'"{SOAP_ACTION}"'
    assert headers[HDR_CORRELATION_ID] == queued.correlation_id
    assert headers[DEV_CONSUMER_HEADER] == "SE0000000000-AGENTHUB"
    assert headers["content-type"].startswith("text/xml")
    request = parse_request(seen.body)
    assert request.logical_address == B
    sent = request.body_element.find(PAYLOAD)
    assert sent is not None
    assert etree.tostring(sent, method="c14n") != b""
    assert parse_request(seen.body).body_element.tag.endswith("ProcessCervixScreeningInformation")


def test_zeep_reads_the_wsdl_offline_and_keeps_extensions() -> None:
    client = client_module.zeep_client()
    adapters = client.transport.session.adapters
    # http(s) refuse everything; zeep's own file:// adapter reads wsdl/ from disk.
    assert isinstance(adapters["http://"], client_module._NoNetwork)
    assert isinstance(adapters["https://"], client_module._NoNetwork)
    data = (DATA / "request_extensions.xml").read_bytes().replace(b"{PNR}", b"196201209985")
    body = parse_request(data).body_element
    envelope = build_envelope(B, body)
    rebuilt = parse_request(envelope)
    assert rebuilt.logical_address == B
    names = {
        etree.QName(e).localname for e in rebuilt.body_element.iter() if isinstance(e.tag, str)
    }
    assert {"idNote", "personNote", "orgNote", "nested", "informationNote"} <= names


def test_http_5xx_without_soap_is_resent_then_failed(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
) -> None:
    fake, server = platform
    fake.answer = lambda _b: (503, b"busy", "text/plain")
    [record_id] = queue(hub, make_pnr)
    drain(hub, settings_for(server.url), timeout=20)
    found = get_record(scope_of(hub, A, "test"), record_id)
    assert found is not None
    assert (found[0].state, found[0].attempts, found[0].fault_code) == ("failed", 3, "HTTP503")
    assert [t.http_status for t in found[1]] == [503, 503, 503]


def test_a_transient_fault_then_ok_is_delivered_on_the_second_attempt(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
) -> None:
    fake, server = platform
    answers = iter([(500, vp(VpCode.VP009), "text/xml")])
    fake.answer = lambda _b: next(answers, (200, build_response_envelope("OK", None), "text/xml"))
    [record_id] = queue(hub, make_pnr)
    drain(hub, settings_for(server.url), timeout=20)
    found = get_record(scope_of(hub, A, "test"), record_id)
    assert found is not None
    assert (found[0].state, found[0].attempts) == ("delivered", 2)
    assert [(t.outcome, t.code) for t in found[1]] == [("retry", "VP009"), ("delivered", "OK")]
    # Both attempts sent the very same bytes (the producer's idempotency depends on it).
    assert fake.seen[0].body == fake.seen[1].body


# --- the outbox ----------------------------------------------------------------------------------


def test_an_invalid_record_is_refused_with_the_rule(hub: Hub, regions_ab: Any) -> None:
    info = sample_information("sample", pnr="196201209984", sending_lan=A, today=swedish_today())
    with pytest.raises(RecordRefused, match=r"personId/extension.*personnummer rule"):
        approve(hub, A, B, info)
    assert list_outbox(scope_of(hub, A, "test")) == []


def test_a_record_whose_home_is_the_region_itself_is_reported_not_queued(
    hub: Hub, regions_ab: Any, make_pnr: Callable[[], str]
) -> None:
    info = sample_information("sample", pnr=make_pnr(), sending_lan=A, today=swedish_today())
    stored = submit(hub, A, A, info)
    assert (stored.outcome, stored.record_id) == ("own_region", None)
    assert list_outbox(scope_of(hub, A, "test")) == []


@pytest.mark.parametrize(
    ("lan", "to", "sender", "message"),
    [
        (A, "99", A, "not a län code"),
        (A, B, B, "sendingRegion"),
    ],
)
def test_intake_refuses_what_must_not_be_sent(
    hub: Hub,
    regions_ab: Any,
    make_pnr: Callable[[], str],
    lan: str,
    to: str,
    sender: str,
    message: str,
) -> None:
    info = sample_information("sample", pnr=make_pnr(), sending_lan=sender, today=swedish_today())
    with pytest.raises(RecordRefused, match=message):
        approve(hub, lan, to, info)


def test_a_region_that_is_not_a_member_gets_no_scope_to_send_from(
    hub: Hub, regions_ab: Any
) -> None:
    # The check moved from enqueue to the one home of authorisation: no scope, no outbox.
    with pytest.raises(NotFound, match="not registered"):
        scope_of(hub, C, "reviewer", Permission.DECIDE)


def test_a_region_whose_agreement_ended_cannot_send(
    hub: Hub, add_region: Callable[..., MemberRegion], make_pnr: Callable[[], str]
) -> None:
    add_region(A, "SE2321000131", "A", active_to=swedish_today() - timedelta(days=1))
    with pytest.raises(IntakeRefused, match="agreement is not active"):
        queue(hub, make_pnr)


def test_approving_the_same_record_twice_queues_it_once(
    hub: Hub, regions_ab: Any, make_pnr: Callable[[], str]
) -> None:
    info = sample_information("treatment", pnr=make_pnr(), sending_lan=A, today=swedish_today())
    first = approve(hub, A, B, info)
    again = approve(hub, A, B, information_to_element(info))
    assert again.duplicate and again.record_id == first.record_id
    assert len(list_outbox(scope_of(hub, A, "test"))) == 1


def test_personal_data_is_sealed_at_rest_and_masked_in_lists(
    hub: Hub, regions_ab: Any, make_pnr: Callable[[], str]
) -> None:
    pnr = make_pnr()
    info = sample_information("move", pnr=pnr, sending_lan=A, today=swedish_today())
    approve(hub, A, B, info)
    with hub.db.region(A).connect() as connection:
        row = connection.execute(select(outbox)).one()
    raw = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    assert pnr.encode() not in raw and pnr[2:].encode() not in raw
    [view] = list_outbox(scope_of(hub, A, "test"))
    assert view.masked_pnr == f"{pnr[:8]}-****"


def test_region_b_sees_nothing_of_region_as_outbox(
    hub: Hub, regions_ab: Any, make_pnr: Callable[[], str]
) -> None:
    [record_id] = queue(hub, make_pnr)
    assert list_outbox(scope_of(hub, B, "test")) == []
    assert get_record(scope_of(hub, B, "test"), record_id) is None
    with pytest.raises(OutboxError):
        resend(scope_of(hub, B, "operator"), record_id)
    with hub.db.region(B).connect() as connection:
        assert connection.execute(select(outbox.c.id)).all() == []
    if not hub.db.is_sqlite:
        # B's engine names B's schema in every statement; A's record lies in A's schema alone.
        assert hub.db.region(B).get_execution_options()["schema_translate_map"] == {
            "region": f"region_{B}"
        }
        with hub.db.hub.connect() as connection:
            in_a = connection.execute(text("SELECT count(*) FROM region_14.outbox")).scalar()
            in_b = connection.execute(text("SELECT count(*) FROM region_01.outbox")).scalar()
        assert (in_a, in_b) == (1, 0)


def test_claims_are_exclusive_and_expired_claims_return(
    hub: Hub, regions_ab: Any, make_pnr: Callable[[], str]
) -> None:
    queue(hub, make_pnr, n=4)
    first = claim(hub, A, B, 3, "w1", timedelta(minutes=5))
    second = claim(hub, A, B, 3, "w2", timedelta(minutes=5))
    assert len(first) == 3 and len(second) == 1
    assert not {c.id for c in first} & {c.id for c in second}
    assert claim(hub, A, B, 3, "w3", timedelta(minutes=5)) == []
    # A worker that dies: its lease runs out and the record is claimed again, attempt 2.
    expired = claim(hub, A, B, 0, "w4", timedelta(0))
    assert expired == []
    with hub.db.region(A).begin() as connection:
        connection.execute(outbox.update().values(claimed_until=outbox.c.created_at))
    again = claim(hub, A, B, 10, "w5", timedelta(minutes=5))
    assert len(again) == 4 and {c.attempt for c in again} == {2}


def test_a_record_whose_last_attempt_was_lost_is_failed_without_another_call(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
) -> None:
    fake, server = platform
    [record_id] = queue(hub, make_pnr)
    with hub.db.region(A).begin() as connection:
        connection.execute(
            outbox.update().values(
                state="sending", attempts=3, claimed_by="dead", claimed_until=outbox.c.created_at
            )
        )
    run_senders_once(hub, settings_for(server.url, max_attempts=3))
    found = get_record(scope_of(hub, A, "test"), record_id)
    assert found is not None
    assert (found[0].state, found[0].fault_code) == ("failed", "LEASE")
    assert fake.seen == []


def test_only_failed_records_can_be_resent_and_the_resend_is_audited(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
) -> None:
    fake, server = platform
    fake.answer = lambda _b: (500, vp(VpCode.VP004), "text/xml")
    [record_id] = queue(hub, make_pnr)
    drain(hub, settings_for(server.url), timeout=20)
    [alert] = list_alerts(hub, lan=A)
    assert (alert.kind, alert.code, alert.record_id) == ("configuration", "VP004", record_id)
    assert list_alerts(hub, lan=B) == []

    fake.answer = lambda _b: (200, build_response_envelope("OK", None), "text/xml")
    resend(scope_of(hub, A, "operator:alice"), record_id)
    drain(hub, settings_for(server.url), timeout=20)
    found = get_record(scope_of(hub, A, "test"), record_id)
    assert found is not None and (found[0].state, found[0].attempts) == ("delivered", 1)
    with pytest.raises(OutboxError, match="only a failed record"):
        resend(scope_of(hub, A, "operator:alice"), record_id)
    with hub.db.hub.connect() as connection:
        actions = connection.execute(select(operator_audit.c.action, operator_audit.c.actor)).all()
    assert ("outbox.resend", "operator:alice") in [tuple(a) for a in actions]


def test_logs_and_alerts_never_carry_a_personnummer(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, server = platform
    pnr = make_pnr()
    fake.answer = lambda _b: (
        200,
        build_response_envelope("ERROR", f"unknown person {pnr}"),
        "text/xml",
    )
    info = sample_information("sample", pnr=pnr, sending_lan=A, today=swedish_today())
    caplog.set_level(logging.DEBUG)
    queued = approve(hub, A, B, info)
    drain(hub, settings_for(server.url), timeout=20)
    [alert] = list_alerts(hub)
    assert pnr not in alert.detail and alert.kind == "refused"
    found = get_record(scope_of(hub, A, "test"), queued.record_id)
    assert found is not None and found[0].result_text and pnr not in found[0].result_text
    assert pnr not in caplog.text and pnr[2:] not in caplog.text


# --- the worker's jobs ---------------------------------------------------------------------------


def test_the_worker_job_list_runs_the_senders_in_a_scheduler(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    _, server = platform
    scheduler = BackgroundScheduler()
    settings = settings_for(server.url)
    settings = ConsumerSettings(
        ntjp_url=settings.ntjp_url, default_policy=settings.default_policy, poll_interval_s=0.1
    )
    dispatcher = add_jobs(scheduler, hub, JobSettings(), "w1", settings)
    assert {j.id for j in scheduler.get_jobs()} >= {"outbox.send", "outbox.receipts"}
    [record_id] = queue(hub, make_pnr)
    scheduler.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = get_record(scope_of(hub, A, "test"), record_id)
            if found is not None and found[0].receipt_name:
                break
            time.sleep(0.1)
    finally:
        scheduler.shutdown()
    assert found is not None and found[0].state == "delivered" and found[0].receipt_name
    assert dispatcher._stop.is_set()  # shut down with the scheduler


def test_dispatcher_counts_calls(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
) -> None:
    _, server = platform
    queue(hub, make_pnr, n=3)
    dispatcher = Dispatcher(hub, settings_for(server.url))
    try:
        stats = dispatcher.run_once()
    finally:
        dispatcher.close()
    assert (stats.calls, stats.delivered, stats.by_code) == (3, 3, {"OK": 3})


# --- the command line ----------------------------------------------------------------------------


def test_cli_send_outbox_and_alerts(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, server = platform
    for key, value in {
        "AGENTHUB_ENV": "test",
        "AGENTHUB_DATA_DIR": str(hub.settings.data_dir),
        "AGENTHUB_DATABASE_URL": hub.settings.database_url,
        "AGENTHUB_NTJP_URL": server.url + ENDPOINT_PATH,
        "AGENTHUB_SEND_PAUSE_MS": "10",
    }.items():
        monkeypatch.setenv(key, value)
    pnr = make_pnr()
    info = sample_information("move", pnr=pnr, sending_lan=A, today=swedish_today())
    record = tmp_path / "record.xml"
    record.write_bytes(etree.tostring(information_to_element(info)))

    # `send` puts the record in the review queue; with --wait it waits for the decision (a
    # reviewer approves it meanwhile) and then sends it.
    codes: list[int] = []
    sender = threading.Thread(
        target=lambda: codes.append(
            main(["send", "--lan", A, "--to", B, str(record), "--wait", "20"])
        )
    )
    sender.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with hub.db.region(A).connect() as connection:
            waiting = connection.execute(
                select(review_records).where(review_records.c.state == "pending")
            ).all()
        if waiting:
            break
        time.sleep(0.05)
    [pending] = waiting
    reviewer = region_scope(hub, reviewer_of(A), A, Permission.DECIDE)
    decide(reviewer, pending.id, "approve", content_sha256=pending.content_sha256)
    sender.join(30)
    assert codes == [0]
    out = capsys.readouterr().out
    assert f"queued for review: record {pending.id}" in out
    assert "decided: approved" in out and "delivered 1" in out

    assert main(["outbox", "--lan", A]) == 0
    listing = capsys.readouterr().out
    assert f"{pnr[:8]}-****" in listing and pnr not in listing and "delivered" in listing
    assert main(["outbox", "--lan", B]) == 0
    assert pnr[:8] not in capsys.readouterr().out

    bad = tmp_path / "bad.xml"
    bad.write_bytes(
        etree.tostring(information_to_element(info)).replace(pnr.encode(), b"196201209984")
    )
    assert main(["send", "--lan", A, "--to", B, str(bad)]) == 1
    assert "personnummer rule" in capsys.readouterr().err

    assert main(["alerts", "--all"]) == 0


def test_a_batch_is_taken_in_and_approved_together_and_each_refusal_reported(
    hub: Hub, regions_ab: Any, make_pnr: Callable[[], str]
) -> None:
    today = swedish_today()
    good = sample_information("move", pnr=make_pnr(), sending_lan=A, today=today)
    bad = sample_information("sample", pnr="196201209984", sending_lan=A, today=today)
    report = take_in(
        scope_of(hub, A, "test", Permission.SUBMIT),
        [
            Submission(B, good, reference="x:1", line=1),
            Submission(B, bad, reference="x:2", line=2),
            Submission(B, good, reference="x:3", line=3),
            Submission(C, good, reference="x:4", line=4),
        ],
        source="cli",
        name="batch",
    )
    first, refused, again, other = report.results
    assert isinstance(first, Stored) and first.outcome == "queued"
    assert isinstance(refused, RecordRefused) and "personnummer rule" in str(refused)
    assert isinstance(again, Stored) and again.outcome == "duplicate"
    assert again.record_id == first.record_id
    assert isinstance(other, Stored) and other.outcome == "queued"
    assert (report.queued, report.duplicates, report.rejected) == (2, 1, 1)
    reviewer = region_scope(hub, reviewer_of(A), A, Permission.DECIDE)
    assert first.record_id is not None and other.record_id is not None
    decided = decide_bulk(reviewer, [first.record_id, other.record_id], "approve")
    assert {d.state for d in decided} == {"approved"}
    assert len({d.batch_id for d in decided}) == 1
    assert {(v.to_lan, v.reference) for v in list_outbox(scope_of(hub, A, "test"))} == {
        (B, "x:1"),
        (C, "x:4"),
    }


def test_cli_ntjp_sim_serves_the_simulator(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    import requests

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "ntjp-sim", "--port", str(port)],
        env={**os.environ, "AGENTHUB_LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        assert answer.status_code == 200 and "NTjP simulator" in answer.text
    finally:
        process.terminate()
        process.wait(10)


# --- a hard deadline per call, claims that outlast it, attempts counted once (issue 17) ---------


def _trickling(body_bytes: int = 100_000, **kw: Any) -> TricklingServer:
    """A destination that answers 200 with ``Content-Length`` and then a byte at a time."""
    return TricklingServer(http_head(length=body_bytes), b"x" * body_bytes, **kw)


def _policy(**changes: Any) -> DestinationPolicy:
    values: dict[str, Any] = {"rate_per_s": 0, "timeout_ms": 1000, "connect_timeout_ms": 500}
    values.update(changes)
    return DestinationPolicy(**values)


def test_a_destination_that_trickles_its_answer_is_cut_off_at_the_calls_deadline() -> None:
    policy = _policy()  # read timeout 1 s, connect 0.5 s: a deadline of 1.5 s for the call
    client = client_module.NtjpClient(ConsumerSettings())
    # The body a byte at a time, and (second server) the status line and headers too: every
    # byte comes well within the read timeout, and neither may hold the call past its deadline.
    servers = [
        _trickling(interval=0.2, close_after=6.0),
        TricklingServer(http_head(length=10) + b"x" * 10, head_step=1, close_after=6.0),
    ]
    try:
        for server in servers:
            client.settings = ConsumerSettings(ntjp_url=server.url + ENDPOINT_PATH)
            started = time.monotonic()
            answer = client.call(b"<x/>", "corr-1", policy)
            took = time.monotonic() - started
            assert (answer.outcome, answer.code) == ("retry", "TIMEOUT"), answer
            assert "deadline of 1.5 s" in (answer.text or "")
            assert 1.4 <= took < 2.5, took
    finally:
        client.close()
        for server in servers:
            server.stop()


def test_an_answer_cut_off_mid_body_is_a_broken_answer_and_never_raises() -> None:
    # Content-Length says 1000, ten bytes come, then the peer closes.
    server = TricklingServer(http_head(length=1000), b"0123456789", step=10)
    client = client_module.NtjpClient(ConsumerSettings(ntjp_url=server.url + ENDPOINT_PATH))
    try:
        answer = client.call(b"<x/>", "corr-1", _policy())
    finally:
        client.close()
        server.stop()
    assert (answer.outcome, answer.code, answer.http_status) == ("retry", "BROKEN", 200)
    assert answer.text is not None and "broke off" in answer.text


def test_claims_outlast_slow_calls_and_every_attempt_is_counted_and_recorded_once(
    hub: Hub,
    regions_ab: Any,
    make_pnr: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hub.db.region_tables import outbox_attempts
    from hub.outbound import sender as sender_module

    # Leases short enough that records waiting behind slow calls would run out of them.
    monkeypatch.setattr(sender_module, "LEASE_MARGIN_S", 0.5, raising=False)
    monkeypatch.setattr(sender_module, "RENEW_EVERY_S", 0.2, raising=False)
    server = _trickling(interval=0.2, close_after=8.0)
    ids = queue(hub, make_pnr, n=3)
    settings = ConsumerSettings(
        ntjp_url=server.url + ENDPOINT_PATH,
        default_policy=_policy(concurrency=1, max_attempts=2, pause_ms=10),
    )
    try:
        drain(hub, settings, timeout=40)
    finally:
        server.stop()
    with hub.db.region(A).connect() as connection:
        records = {
            row.id: row
            for row in connection.execute(
                select(outbox.c.id, outbox.c.state, outbox.c.attempts, outbox.c.fault_code)
            )
        }
        logged = connection.execute(
            select(outbox_attempts.c.outbox_id, outbox_attempts.c.attempt, outbox_attempts.c.code)
        ).all()
    for record_id in ids:
        row = records[record_id]
        assert (row.state, row.attempts, row.fault_code) == ("failed", 2, "TIMEOUT")
        mine = sorted((a.attempt, a.code) for a in logged if a.outbox_id == record_id)
        assert mine == [(1, "TIMEOUT"), (2, "TIMEOUT")]
    assert server.connections == 6  # one call per attempt: none made twice


def test_an_expired_claims_attempt_is_recorded_as_lost_not_dropped(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
) -> None:
    from hub.db.region_tables import outbox_attempts

    _, server = platform
    [record_id] = queue(hub, make_pnr)
    # A worker claimed it (attempt 1 counted) and died mid-call.
    [dead] = claim(hub, A, B, 1, "dead-worker", timedelta(seconds=30))
    with hub.db.region(A).begin() as connection:
        connection.execute(outbox.update().values(claimed_until=outbox.c.created_at))
    run_senders_once(hub, settings_for(server.url))
    found = get_record(scope_of(hub, A, "test"), record_id)
    assert found is not None
    view, attempts = found
    assert (view.state, view.attempts) == ("delivered", 2)
    assert [(a.attempt, a.code) for a in attempts] == [(1, "LEASE"), (2, "OK")]
    with hub.db.region(A).connect() as connection:
        assert len(connection.execute(select(outbox_attempts.c.id)).all()) == 2
    assert dead.attempt == 1


def test_an_ended_regions_outbox_is_not_sent_and_a_destroyed_keys_records_fail_saying_why(
    hub: Hub,
    regions_ab: Any,
    platform: tuple[FakePlatform, LiveServer],
    make_pnr: Callable[[], str],
) -> None:
    from datetime import date

    from hub.drops.state import Backoff
    from hub.outbound.receipts import write_receipts
    from hub.tenancy.access import system_actor
    from hub.tenancy.registry import end_agreement, reinstate_region

    fake, server = platform
    [record_id] = queue(hub, make_pnr)
    [other_id] = queue(hub, make_pnr, lan=B, to=A)
    end_agreement(hub.db, hub.keys, A, system_actor("test"), destroy_key=False, today=date.today())
    with pytest.raises(ValueError, match="not active"):
        queue(hub, make_pnr)
    stats = run_senders_once(hub, settings_for(server.url))
    # Region B's record went; A's waits, unsent and uncounted.
    assert stats.calls == 1 and len(fake.seen) == 1
    found = get_record(scope_of(hub, A, "test"), record_id)
    assert found is not None and (found[0].state, found[0].attempts) == ("queued", 0)
    # Reinstated with its key kept, it is sent as it was.
    reinstate_region(hub.db, hub.keys, A, system_actor("test"))
    run_senders_once(hub, settings_for(server.url))
    found = get_record(scope_of(hub, A, "test"), record_id)
    assert found is not None and found[0].state == "delivered"
    # A record sealed under a key since destroyed fails at once, with the reason, uncalled.
    [sealed] = queue(hub, make_pnr)
    end_agreement(hub.db, hub.keys, A, system_actor("test"), destroy_key=True, today=date.today())
    # Receipts: the destroyed region's are skipped; the run goes on for the others.
    assert write_receipts(hub, Backoff()) == 1
    reinstate_region(hub.db, hub.keys, A, system_actor("test"))
    calls = len(fake.seen)
    run_senders_once(hub, settings_for(server.url))
    assert len(fake.seen) == calls
    found = get_record(scope_of(hub, A, "test"), sealed)
    assert found is not None
    assert (found[0].state, found[0].fault_code, found[0].attempts) == ("failed", "KEY", 0)
    assert found[0].last_error and "destroyed or replaced" in found[0].last_error
    assert other_id
