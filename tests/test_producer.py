"""The producer endpoint: answers per the contract, storage per region, hostile input."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree
from sqlalchemy import func, select

from hub.context import Hub, build_hub
from hub.contract.names import (
    ENDPOINT_PATH,
    HDR_ORIGINAL_CONSUMER,
    RESPONDER_NS,
    SOAP11_ENV_NS,
)
from hub.contract.samples import sample_information
from hub.contract.serialise import build_request_envelope
from hub.db import engines as db
from hub.db.region_tables import access_log, messages
from hub.inbound.views import list_messages, read_body
from hub.producer import spyne as spyne_module
from hub.producer.endpoint import MAX_CACHED_DOCUMENTS
from hub.tenancy.access import region_cipher
from hub.tenancy.registry import MemberRegion
from hub.web.app import create_app
from tests.conftest import end_database_sessions, scope_of, sessions_ended_midway
from tests.hostile import HOSTILE, schema_probes, valid

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}


def envelope(lan: str, pnr: str, scenario: str = "move", sending_lan: str = "05") -> bytes:
    """A valid request for ``lan`` about the synthetic ``pnr``."""
    info = sample_information(scenario, pnr=pnr, sending_lan=sending_lan, today=date.today())  # type: ignore[arg-type]
    return build_request_envelope(lan, info)


def post(client: Any, body: bytes, **headers: str) -> tuple[int, etree._Element]:
    """POST to the endpoint from loopback; return status and parsed answer envelope."""
    response = client.post(
        ENDPOINT_PATH,
        data=body,
        headers={"Content-Type": "text/xml; charset=utf-8", **headers},
        environ_base=LOOPBACK,
    )
    assert response.data, "never an empty body"
    return response.status_code, etree.fromstring(response.data)


def result(answer: etree._Element) -> tuple[str, str | None]:
    """resultCode and resultText of a response envelope."""
    code = answer.findtext(f".//{{{RESPONDER_NS}}}resultCode")
    assert code is not None, etree.tostring(answer)
    return code, answer.findtext(f".//{{{RESPONDER_NS}}}resultText")


def fault(answer: etree._Element) -> tuple[str, str]:
    """faultcode (local part) and faultstring of a fault envelope."""
    node = answer.find(f".//{{{SOAP11_ENV_NS}}}Fault")
    assert node is not None, etree.tostring(answer)
    return (node.findtext("faultcode") or "").split(":")[-1], node.findtext("faultstring") or ""


def count(hub: Hub, lan: str) -> int:
    """Messages stored in one region."""
    with hub.db.region(lan).connect() as connection:
        return int(connection.execute(select(func.count()).select_from(messages)).scalar_one())


def test_valid_call_is_stored_for_that_region_only(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    status, answer = post(
        client,
        envelope("14", make_pnr()),
        **{
            "x-skltp-correlation-id": "corr-1",
            "x-rivta-original-serviceconsumer-hsaid": "SE2321000040-ABC1",
        },
    )
    assert status == 200
    assert result(answer) == ("OK", None)
    assert count(hub, "14") == 1
    assert count(hub, "01") == 0
    with hub.db.region("14").connect() as connection:
        row = connection.execute(select(messages)).one()
    assert row.correlation_id == "corr-1"
    assert row.original_consumer_hsaid == "SE2321000040-ABC1"
    assert row.sender_hsaid == "dev-loopback"
    assert row.kind == "move"


def test_parsed_fields_are_stored_encrypted_with_every_value(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    pnr = make_pnr()
    info = sample_information("move", pnr=pnr, sending_lan="05", today=date.today())
    status, answer = post(client, build_request_envelope("14", info))
    assert (status, result(answer)) == (200, ("OK", None))
    with hub.db.region("14").connect() as connection:
        sealed = connection.execute(select(messages.c.fields_enc)).scalar_one()
    assert pnr.encode() not in sealed  # encrypted at rest
    fields = json.loads(region_cipher(hub, "14").open(sealed, "fields"))
    assert fields == json.loads(json.dumps(dataclasses.asdict(info)))  # tuples as lists
    assert fields["subject_of_care"]["person_id"]["extension"] == pnr


def test_a_message_is_stored_whole_inside_its_row(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    # Body and fields are sealed as they are (no deflating: a tenth of the producer's CPU), and
    # on PostgreSQL the few-kB row stays in the table instead of going out to its TOAST table,
    # which would mean a second heap and index write for every message (migration region0004).
    body = envelope("14", make_pnr())
    status, answer = post(client, body)
    assert (status, result(answer)) == (200, ("OK", None))
    with hub.db.region("14").connect() as connection:
        row = connection.execute(select(messages.c.body_enc, messages.c.fields_enc)).one()
        assert len(row.body_enc) + len(row.fields_enc) > 2100  # over the default TOAST threshold
        if not hub.db.is_sqlite:
            toasted = connection.exec_driver_sql(
                "SELECT c.reloptions, pg_relation_size(c.reltoastrelid) FROM pg_class c "
                "WHERE c.oid = 'region_14.messages'::regclass"
            ).one()
            assert toasted == (["toast_tuple_target=8160"], 0)
    assert row.body_enc[:1] == row.fields_enc[:1] == b"\x01"  # sealed, not deflated
    assert region_cipher(hub, "14").open(row.body_enc, "body") == body


def test_identical_resend_is_answered_ok_and_stored_once(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    body = envelope("14", make_pnr())
    assert result(post(client, body)[1])[0] == "OK"
    # Same content with other whitespace between tags is still the same message...
    assert result(post(client, body.replace(b"><", b">\n  <"))[1])[0] == "OK"
    # ...and so is the same content written by a tool with other prefixes (an operator resending
    # it by hand, say): the core namespace as the default one, the responder's as "r".
    other = body.replace(b"<core:", b"<").replace(b"</core:", b"</")
    other = other.replace(b"xmlns:core=", b"xmlns=").replace(b"tjsr:", b"r:")
    other = other.replace(b"xmlns:tjsr=", b"xmlns:r=")
    assert other != body and result(post(client, other)[1])[0] == "OK"
    assert count(hub, "14") == 1


def test_same_content_to_two_regions_is_two_messages(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    pnr = make_pnr()
    assert result(post(client, envelope("14", pnr))[1])[0] == "OK"
    assert result(post(client, envelope("01", pnr))[1])[0] == "OK"
    assert (count(hub, "14"), count(hub, "01")) == (1, 1)


def test_r1_message_is_stored_as_no_information(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    status, answer = post(client, envelope("14", make_pnr(), scenario="no_information"))
    assert (status, result(answer)[0]) == (200, "OK")
    with hub.db.region("14").connect() as connection:
        assert connection.execute(select(messages.c.kind)).scalar_one() == "no_information"


@pytest.mark.parametrize("lan", ["03", "99", "1", " 14", "SE"])
def test_unserved_or_malformed_lan_code_is_error_and_stores_nothing(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    lan: str,
) -> None:
    status, answer = post(client, envelope(lan, make_pnr()))
    code, text = result(answer)
    assert (status, code) == (200, "ERROR")
    assert text and "LogicalAddress" in text
    assert count(hub, "14") + count(hub, "01") == 0


def test_every_call_ends_its_announcement_to_the_group_commit(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A call announces itself to the group commit while it is validated; whatever its end (OK,
    # ERROR, a resend, a failure), none may stay counted, or every later batch would wait.
    body = envelope("14", make_pnr())
    assert result(post(client, body)[1])[0] == "OK"
    assert result(post(client, body)[1])[0] == "OK"  # the resend
    assert result(post(client, envelope("03", make_pnr()))[1])[0] == "ERROR"
    assert hub.inbound._expected == 0

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("validation broke")

    monkeypatch.setattr("hub.inbound.service.validate_request", broken)
    status, answer = post(client, envelope("14", make_pnr()))
    assert (status, fault(answer)[0]) == (500, "Server")
    assert hub.inbound._expected == 0


def test_region_whose_agreement_is_not_active_gets_error(
    hub: Hub, client: Any, add_region: Callable[..., MemberRegion], make_pnr: Callable[[], str]
) -> None:
    add_region(
        "14", "SE2321000131", "Västra Götalandsregionen", active_to=date.today() - timedelta(days=1)
    )
    add_region("01", "SE2321000016", "Region Stockholm", platform_confirmed=None)
    for lan in ("14", "01"):
        code, text = result(post(client, envelope(lan, make_pnr()))[1])
        assert code == "ERROR"
        assert text and "agreement is not active" in text
    assert count(hub, "14") + count(hub, "01") == 0


def test_rule_violation_is_error_naming_the_field_without_the_personnummer(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    pnr = make_pnr()
    bad = pnr[:-1] + str((int(pnr[-1]) + 1) % 10)  # wrong check digit
    status, answer = post(client, envelope("14", pnr).replace(pnr.encode(), bad.encode()))
    code, text = result(answer)
    assert (status, code) == (200, "ERROR")
    assert text and "personId/extension" in text
    assert bad not in text and bad[:8] not in text
    assert count(hub, "14") == 0


def test_wrong_namespace_inside_the_message_is_error(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    body = envelope("14", make_pnr()).replace(
        b"urn:riv:clinicalprocess:logistics:cervixscreening:1", b"urn:example:wrong:1"
    )
    code, text = result(post(client, body)[1])
    assert code == "ERROR" and text


def test_operation_in_a_foreign_namespace_is_a_client_fault(
    client: Any, regions_ab: tuple[MemberRegion, MemberRegion], make_pnr: Callable[[], str]
) -> None:
    body = envelope("14", make_pnr()).replace(RESPONDER_NS.encode(), b"urn:example:other:1")
    status, answer = post(client, body)
    assert status == 500
    assert fault(answer)[0].startswith("Client")


def test_spyne_event_listeners_run_for_a_call_and_for_a_fault(
    app: Any,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    # The producer's Spyne context fires events its own way (hub/producer/service.py): listeners
    # on the application and on the service must still run, application first.
    from hub.producer.spyne import ResponderService

    spyne_app = app.wsgi_app.mounts[ENDPOINT_PATH].spyne.app
    heard: list[str] = []

    def on_app(ctx: Any) -> None:
        heard.append("application:" + ctx.method_request_string.rpartition("}")[2])

    def on_service(ctx: Any) -> None:
        heard.append("service")

    spyne_app.event_manager.add_listener("method_call", on_app)
    ResponderService.event_manager.add_listener("method_call", on_service)
    spyne_app.event_manager.add_listener("method_exception_object", on_app)
    try:
        status, answer = post(client, envelope("14", make_pnr()))
        assert (status, result(answer)) == (200, ("OK", None))
        assert heard == ["application:ProcessCervixScreeningInformation", "service"]
        heard.clear()
        foreign = envelope("14", make_pnr()).replace(RESPONDER_NS.encode(), b"urn:example:o:1")
        assert post(client, foreign)[0] == 500
        assert heard == ["application:ProcessCervixScreeningInformation"]  # no such method
    finally:
        ResponderService.event_manager.del_listener("method_call", on_service)
        spyne_app.event_manager.del_listener("method_call", on_app)
        spyne_app.event_manager.del_listener("method_exception_object", on_app)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<not xml", "not well-formed"),
        (b"", "not well-formed"),
        (b"<a>plain xml</a>", "not a SOAP 1.1 Envelope"),
        (f'<e:Envelope xmlns:e="{SOAP11_ENV_NS}"><e:Body/></e:Envelope>'.encode(), "Body is empty"),
        (
            b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>&x;'
            b"</e:Body></e:Envelope>",
            "DOCTYPE",
        ),
    ],
)
def test_malformed_requests_get_a_client_fault(
    client: Any, regions_ab: tuple[MemberRegion, MemberRegion], body: bytes, expected: str
) -> None:
    status, answer = post(client, body)
    code, text = fault(answer)
    assert (status, code) == (500, "Client")
    assert expected in text
    assert "passwd" not in text and "root:" not in text


def test_entity_expansion_bomb_is_refused_fast(
    client: Any, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    lol = "".join(f'<!ENTITY l{i} "{"&l" + str(i - 1) + ";" * 1}' * 10 + '">' for i in range(1, 10))
    body = (
        f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY l0 "lol">{lol}]>'
        f'<e:Envelope xmlns:e="{SOAP11_ENV_NS}"><e:Body>&l9;</e:Body></e:Envelope>'
    ).encode()
    started = time.perf_counter()
    status, answer = post(client, body)
    # A bound on cost, generous for a shared machine: expansion would take minutes and gigabytes.
    assert time.perf_counter() - started < 2.0
    assert status == 500 and fault(answer)[0] == "Client"


def test_six_megabyte_body_is_refused_without_storing(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    body = envelope("14", make_pnr())
    padded = (
        body.replace(
            b"</soapenv:Envelope>", b"<!--" + b"x" * (6 * 1024 * 1024) + b"--></soapenv:Envelope>"
        )
        if b"soapenv:" in body
        else body + b" " * (6 << 20)
    )
    status, answer = post(client, padded)
    code, text = fault(answer)
    assert (status, code) == (500, "Client")
    assert "exceeds" in text or "larger" in text
    assert count(hub, "14") == 0


def test_database_down_is_a_server_fault_without_details(
    settings: Any,
    hub: Hub,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    tmp_path: Path,
) -> None:
    if settings.is_sqlite:
        broken_url = f"sqlite:///{tmp_path / 'broken.db'}"
        (tmp_path / "broken.db").write_bytes(b"this is not a database file" * 100)
    else:
        broken_url = "postgresql+psycopg2://postgres@127.0.0.1:1/nothing"
    down = build_hub(settings.with_overrides(database_url=broken_url))
    try:
        pnr = make_pnr()
        status, answer = post(create_app(down).test_client(), envelope("14", pnr))
    finally:
        down.close()
    code, text = fault(answer)
    assert (status, code) == (500, "Server")
    assert pnr not in text and "Traceback" not in text and "sqlite" not in text.lower()


def test_a_database_host_that_never_answers_gives_a_server_fault_in_bounded_time(
    settings: Any,
    make_pnr: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    silent_server: tuple[str, int],
) -> None:
    if not settings.is_sqlite:
        pytest.skip("the silent host stands in for PostgreSQL itself; once is enough")
    monkeypatch.setattr(db, "CONNECT_TIMEOUT_SECONDS", 1)
    host, port = silent_server
    answers: list[tuple[int, etree._Element]] = []
    hung = build_hub(
        settings.with_overrides(database_url=f"postgresql+psycopg2://postgres@{host}:{port}/hub")
    )
    # A daemon thread: should the call hang, the fixture's closing its sockets at teardown ends it.
    call = threading.Thread(
        target=lambda: answers.append(
            post(create_app(hung).test_client(), envelope("14", make_pnr()))
        ),
        daemon=True,
    )
    call.start()
    # Without a connect timeout the call waits for an answer that never comes.
    call.join(30)
    assert answers, "the call still waits for the database host"
    status, answer = answers[0]
    assert (status, fault(answer)[0]) == (500, "Server")
    hung.close()


def test_after_the_database_dropped_every_connection_calls_and_resends_are_answered_ok(
    settings: Any,
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    postgresql_only: None,
) -> None:
    first = envelope("14", make_pnr())
    for _ in range(2):  # the resend leaves a connection idle in the pool, as traffic does
        assert result(post(client, first)[1]) == ("OK", None)
    # A database restart or failover: every connection the hub holds, in its pool and the group
    # commit's own, is dead, and the hub does not know it yet.
    end_database_sessions(settings.database_url)
    # A new call (the group commit's connection) and a resend (a pooled one, for the stored
    # answer) both find a dead connection first; neither caller may get a fault for it.
    for body in (envelope("14", make_pnr()), first):
        status, answer = post(client, body)
        assert (status, result(answer)) == (200, ("OK", None))
    assert count(hub, "14") == 2


def test_a_resend_whose_lookup_loses_its_connection_midway_is_answered_ok(
    settings: Any,
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    postgresql_only: None,
) -> None:
    body = envelope("14", make_pnr())
    status, answer = post(client, body)
    assert (status, result(answer)) == (200, ("OK", None))
    # The resend's lookup of the stored answer: its session ends as the query goes out.
    engine = hub.db.region("14").engine
    with sessions_ended_midway(engine, settings.database_url, "content_hash") as ended:
        status, answer = post(client, body)
    assert ended, "the lookup did not run"
    assert (status, result(answer)) == (200, ("OK", None))
    assert count(hub, "14") == 1


def _cert_pem(hsa_id: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "NTjP test"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, hsa_id),
        ]
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_caller_is_identified_from_the_ingress_certificate(
    settings: Any,
    hub: Hub,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    from urllib.parse import quote

    master = (settings.data_dir / "master.key").read_text().strip()  # the test hub's key
    strict = build_hub(
        settings.with_overrides(
            env="prod", master_key=master, allowed_consumers=("SE2321000016-NTJP",)
        )
    )
    client = create_app(strict).test_client()
    body = envelope("14", make_pnr())
    try:
        # No certificate: refused even from loopback outside dev/test.
        response = client.post(ENDPOINT_PATH, data=body, environ_base=LOOPBACK)
        assert response.status_code == 500 and b"certificate is required" in response.data
        # A certificate of a consumer not on the allow-list.
        response = client.post(
            ENDPOINT_PATH,
            data=body,
            environ_base=LOOPBACK,
            headers={"X-SSL-Client-Cert": quote(_cert_pem("SE999-OTHER"))},
        )
        assert response.status_code == 500 and b"not allowed" in response.data
        # A certificate header from an address that is not the ingress is ignored.
        response = client.post(
            ENDPOINT_PATH,
            data=body,
            environ_base={"REMOTE_ADDR": "10.9.9.9"},
            headers={"X-SSL-Client-Cert": quote(_cert_pem("SE2321000016-NTJP"))},
        )
        assert response.status_code == 500 and b"certificate is required" in response.data
        # The platform's certificate through the ingress.
        response = client.post(
            ENDPOINT_PATH,
            data=body,
            environ_base=LOOPBACK,
            headers={"X-SSL-Client-Cert": quote(_cert_pem("SE2321000016-NTJP"))},
        )
        assert response.status_code == 200 and b">OK<" in response.data
    finally:
        strict.close()
    with hub.db.region("14").connect() as connection:
        assert (
            connection.execute(select(messages.c.sender_hsaid)).scalar_one() == "SE2321000016-NTJP"
        )


def test_region_b_never_sees_region_a(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    pnr = make_pnr()
    post(client, envelope("14", pnr))
    a_rows = list_messages(scope_of(hub, "14", "test:alice"))
    assert len(a_rows) == 1 and a_rows[0].masked_pnr.endswith("****")
    message_id = a_rows[0].id
    assert list_messages(scope_of(hub, "01", "test:charlie")) == []
    assert read_body(scope_of(hub, "01", "test:charlie"), message_id) is None
    body_a = read_body(scope_of(hub, "14", "test:alice"), message_id)
    assert body_a is not None and pnr.encode() in body_a
    # Region B's key cannot open region A's data even given the bytes.
    with hub.db.region("14").connect() as connection:
        sealed = connection.execute(select(messages.c.body_enc)).scalar_one()
    with hub.db.hub.connect() as connection:
        cipher_b = hub.keys.cipher(connection, "01")
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        cipher_b.open(sealed, "body")
    # Nothing personal is stored in clear: the raw column bytes hold no personnummer.
    assert pnr.encode() not in sealed
    with hub.db.region("14").connect() as connection:
        actions = [r.action for r in connection.execute(select(access_log))]
    assert actions.count("message.read") == 1


def test_personnummer_never_reaches_the_application_log(
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    pnr = make_pnr()
    post(client, envelope("14", pnr))
    post(client, envelope("14", pnr).replace(b"<", b"<<", 1))
    assert pnr not in caplog.text and pnr[2:] not in caplog.text


def test_concurrent_calls_over_real_http(
    hub: Hub,
    live_server: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    bodies = [envelope("14" if i % 2 else "01", make_pnr()) for i in range(40)]

    def call(body: bytes) -> str:
        response = requests.post(
            live_server.url + ENDPOINT_PATH,
            data=body,
            timeout=29,
            headers={"Content-Type": "text/xml; charset=utf-8"},
        )
        return result(etree.fromstring(response.content))[0]

    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(call, bodies))
    assert codes == ["OK"] * 40
    assert (count(hub, "14"), count(hub, "01")) == (20, 20)


def test_wsdl_is_served_with_the_real_address_and_resolvable_imports(live_server: Any) -> None:
    url = live_server.url + ENDPOINT_PATH
    wsdl = etree.fromstring(requests.get(url + "?wsdl", timeout=10).content)
    address = wsdl.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address is not None and address.get("location") == url
    locations = [
        el.get("schemaLocation") for el in wsdl.iter("{*}import") if el.get("schemaLocation")
    ]
    assert locations
    for location in locations:
        assert location.startswith(url + "?xsd=")
        schema = requests.get(location, timeout=10)
        assert schema.status_code == 200 and b"schema" in schema.content
    assert requests.get(url + "?xsd=../../etc/passwd", timeout=10).status_code == 404


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_the_worst_request_of_each_shape_within_the_cap_costs_well_under_a_second(
    settings: Any,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    shape: str,
) -> None:
    # Issue 17, defect 1: 100,000 attributes in an extension slot, or as many namespace
    # declarations on the Envelope, held a worker (and, through the GIL, all its threads) for
    # seconds to minutes. Each shape here is the largest of its kind the 5 MB cap lets through
    # (tests/hostile.py): refused by a limit, or answered, in a fraction of a second of CPU.
    if not settings.is_sqlite:
        pytest.skip("the cost is the contract code's, not the database's; once is enough")
    body = HOSTILE[shape](make_pnr())
    assert len(body) <= settings.max_body_bytes
    started = time.process_time()
    status, answer = post(client, body)
    cpu = time.process_time() - started
    assert cpu < 1.0, f"{shape}: {cpu:.2f} s of CPU"
    if status == 500:
        code, text = fault(answer)
        assert code == "Client" and text.startswith("the request is too complex: "), text
    else:
        assert result(answer)[0] in ("OK", "ERROR")


def _quoted_anywhere(secret: str, text: str) -> bool:
    """Whether ``text`` holds ``secret``, its date part or its digits after the century."""
    return any(part in text for part in (secret, secret[:8], secret[2:], secret[8:] + "'"))


def test_no_answer_fault_or_log_line_carries_text_from_the_request(
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 17, defect 7: a personnummer in an extension element's value came back in resultText.
    # The class: whatever a sender writes, anywhere, answers and logs say only our own words.
    caplog.set_level(logging.DEBUG)
    secret = make_pnr()
    ns = f"urn:{secret}"
    bodies = list(schema_probes(make_pnr(), secret).values())
    bodies += [
        f"<a{secret}></b>".encode(),  # not well-formed: libxml2 names the tags
        f"<x{secret}/>".encode(),  # not an Envelope
        f'<e:Envelope xmlns:e="{SOAP11_ENV_NS}"><e:Body><o:p{secret} xmlns:o="{ns}"/>'
        "</e:Body></e:Envelope>".encode(),  # no such operation (Spyne named it)
        envelope("14", make_pnr()).replace(
            b"tjsr:ProcessCervixScreeningInformation>", f"tjsr:P{secret}>".encode()
        ),  # a misnamed operation in the right namespace
        f'<?xml version="1.0"?><!DOCTYPE d{secret} [<!ENTITY e "{secret}">]>'
        f'<e:Envelope xmlns:e="{SOAP11_ENV_NS}"><e:Body>&e;</e:Body></e:Envelope>'.encode(),
        valid(make_pnr()).replace(
            b"</tjsr:cervixScreeningInformation>",
            f'<x:n{secret} xmlns:x="{ns}" '.encode()
            + b" ".join(b'a%d="1"' % i for i in range(40))
            + b"/></tjsr:cervixScreeningInformation>",
        ),  # over a limit
        valid(make_pnr()).replace(
            b"<itr:LogicalAddress>14<", f"<itr:LogicalAddress>{secret}<".encode()
        ),  # an address that is no län code
    ]
    headers = {"x-skltp-correlation-id": f"id {secret}", HDR_ORIGINAL_CONSUMER: secret}
    for body in bodies:
        status, answer = post(client, body, **headers)
        assert status in (200, 500)
        assert not _quoted_anywhere(secret, etree.tostring(answer).decode()), body[:300]
    # A technical failure is logged with its traceback and the call's correlation id.
    monkeypatch.setattr(spyne_module, "receive", _raise_runtime_error)
    status, answer = post(client, valid(make_pnr()), **headers)
    assert (status, fault(answer)[0]) == (500, "Server")
    assert "inbound call failed" in caplog.text
    for record in caplog.records:
        assert not _quoted_anywhere(secret, record.getMessage()), record.getMessage()
    assert not _quoted_anywhere(secret, caplog.text)


def _raise_runtime_error(*_: Any) -> Any:
    raise RuntimeError("the store is gone")


def test_the_wsdl_cache_stays_bounded_whatever_hosts_ask(app: Any, client: Any) -> None:
    # Issue 17, defect 8: documents were cached per Host header, for ever; 18,000 distinct Hosts
    # grew each worker by 64 MB.
    documents = app.wsgi_app.mounts[ENDPOINT_PATH].documents
    for i in range(3 * MAX_CACHED_DOCUMENTS):
        answer = client.get(ENDPOINT_PATH + "?wsdl", headers={"Host": f"h{i}.example:8080"})
        assert answer.status_code == 200
        assert documents.cached() <= MAX_CACHED_DOCUMENTS
    address = etree.fromstring(answer.data).find(
        ".//{http://schemas.xmlsoap.org/wsdl/soap/}address"
    )
    assert address is not None
    assert address.get("location") == f"http://h{i}.example:8080{ENDPOINT_PATH}"
    # The same name in other letter cases is one address, one entry.
    before = documents.cached()
    for host in ("H0.Example:8080", "h0.EXAMPLE:8080", "h0.example:8080"):
        assert client.get(ENDPOINT_PATH + "?wsdl", headers={"Host": host}).status_code == 200
    assert documents.cached() <= before + 1


@pytest.mark.parametrize(
    "host",
    [
        'evil.example"><x',
        "a b.example",
        "h.example/path",
        "h.example:80:80",
        "user@h.example",
        "[::1",
        "h.example:123456",
        "x" * 300,
        "198501019801.example\tX: y",
    ],
)
def test_a_host_header_that_is_no_host_name_gets_no_wsdl(app: Any, client: Any, host: str) -> None:
    documents = app.wsgi_app.mounts[ENDPOINT_PATH].documents
    answer = client.get(ENDPOINT_PATH + "?wsdl", headers={"Host": host})
    assert answer.status_code == 400
    assert host.encode() not in answer.data
    assert documents.cached() == 0
    for good in ("hub.example.se", "hub.example.se:443", "10.1.2.3:8080", "[2001:db8::1]:8443"):
        assert (
            client.get(ENDPOINT_PATH + "?wsdl", environ_base={"HTTP_HOST": good}).status_code == 200
        )


def test_a_certificate_header_must_hold_exactly_one_certificate(settings: Any) -> None:
    # Issue 17, defect 9: gunicorn joins repeated headers with a comma and the PEM reader took
    # the first certificate: the ingress's header after a caller's own chose the caller's identity.
    from urllib.parse import quote

    from hub.producer.identity import hsa_id_from_pem, identify

    strict = settings.with_overrides(allowed_consumers=("SE2321000016-NTJP",))
    allowed, foreign = _cert_pem("SE2321000016-NTJP"), _cert_pem("SE999-OTHER")

    def caller(value: str) -> tuple[str | None, str | None]:
        found = identify(strict, "127.0.0.1", value)
        return found.hsa_id, found.refused

    assert caller(quote(allowed)) == ("SE2321000016-NTJP", None)
    assert caller(allowed) == ("SE2321000016-NTJP", None)
    assert caller("  " + quote(allowed) + "\n") == ("SE2321000016-NTJP", None)
    one = "the client certificate header must hold exactly one certificate"
    for value in (
        quote(allowed) + "," + quote(foreign),  # two headers, as gunicorn joins them
        quote(allowed) + ", " + quote(foreign),
        allowed + allowed,
        quote(allowed) + "x",
        "x" + quote(allowed),
        quote(allowed).replace("CERTIFICATE", "PRIVATE KEY"),
        quote(allowed)[: len(quote(allowed)) // 2],
        "-----BEGIN CERTIFICATE----------END CERTIFICATE-----",
    ):
        assert caller(value) == (None, one), value
        assert hsa_id_from_pem(value) is None


def test_a_header_the_producer_must_understand_but_does_not_is_a_must_understand_fault(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    # SOAP 1.1 section 4.2.3: faultcode MustUnderstand; LogicalAddress is understood.
    body = envelope("14", make_pnr())
    secured = body.replace(
        b"<soap:Header>",
        b'<soap:Header><w:Security xmlns:w="urn:x:wsse" soap:mustUnderstand="1"/>',
    )
    status, answer = post(client, secured)
    code, text = fault(answer)
    assert (status, code) == (500, "MustUnderstand")
    assert "Security" not in text and "urn:x" not in text
    marked = body.replace(b"<itr:LogicalAddress>", b'<itr:LogicalAddress soap:mustUnderstand="1">')
    assert marked != body
    assert (post(client, marked)[0], result(post(client, marked)[1])[0]) == (200, "OK")
    assert count(hub, "14") == 1


@pytest.mark.parametrize(
    ("content_type", "answered"),
    [
        ("text/xml; charset=utf-8", "OK"),
        ("Text/XML", "OK"),
        ("", "OK"),  # none given: the body decides
        ("application/soap+xml; charset=utf-8", "SOAP 1.2"),
        ("application/json", "must be text/xml"),
        ("application/x-www-form-urlencoded", "must be text/xml"),
    ],
)
def test_the_content_type_must_be_soap_1_1s_text_xml(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    content_type: str,
    answered: str,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(
        ENDPOINT_PATH, data=envelope("14", make_pnr()), headers=headers, environ_base=LOOPBACK
    )
    answer = etree.fromstring(response.data)
    if answered == "OK":
        assert (response.status_code, result(answer)) == (200, ("OK", None))
        return
    code, text = fault(answer)
    assert (response.status_code, code) == (500, "Client") and answered in text
    assert content_type not in text
    assert count(hub, "14") == 0


def test_a_comment_inside_the_logical_address_does_not_route_it(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    # "1<!---->4" read as 14 after the parse dropped the comment; the platform reads the text
    # as it stands. Decision: the markup is part of the address, which is then no län code.
    body = envelope("14", make_pnr())
    for written in (b"1<!---->4", b"<!-- VGR -->14", b"1<?x?>4"):
        status, answer = post(
            client,
            body.replace(b">14</itr:LogicalAddress>", b">" + written + b"</itr:LogicalAddress>"),
        )
        code, text = result(answer)
        assert (status, code) == (200, "ERROR") and "logical address rule" in (text or "")
    assert count(hub, "14") == 0
    assert result(post(client, body)[1])[0] == "OK"


@pytest.mark.parametrize(
    "extra", [b"<tjsr:ProcessCervixScreeningInformation/>", b"<x:y xmlns:x='urn:x'/>"]
)
def test_a_second_element_in_the_body_is_a_client_fault(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    extra: bytes,
) -> None:
    # Decision: document/literal with one operation; a second element would be stored with
    # the call (in its raw body) but never validated.
    body = envelope("14", make_pnr()).replace(b"</soap:Body>", extra + b"</soap:Body>")
    status, answer = post(client, body)
    code, text = fault(answer)
    assert (status, code) == (500, "Client") and "one element" in text
    assert count(hub, "14") == 0
