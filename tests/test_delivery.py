"""Delivery of received messages to region drops: the files, exactly once, isolation, backoff."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import select, update

from hub.context import Hub, build_hub
from hub.contract.canonical import canonical_bytes
from hub.contract.names import ENDPOINT_PATH, RESPONDER_NS
from hub.contract.samples import sample_information
from hub.contract.serialise import build_request_envelope
from hub.contract.wsdl import schema
from hub.db.region_tables import access_log, messages
from hub.delivery import run as delivery
from hub.delivery.files import NAME_RE, information_element, message_id_of
from hub.delivery.run import deliver_all, deliver_region
from hub.drops.base import RECEIVED
from hub.drops.state import backoff_delay, get_state
from hub.inbound.seed import seed_messages
from hub.jobs.config import JobSettings
from hub.tenancy.access import system_actor
from hub.tenancy.registry import MemberRegion, get_region, save_region
from tests.sshd import SftpServer

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
FAST = JobSettings(backoff_base_s=5, backoff_cap_s=60, lanes=2, batch_size=50)
EXTENSION = '<x:note xmlns:x="urn:example:extension">Åsa Öberg, Malmö — ÅÄÖ åäö</x:note>'


def envelope(lan: str, pnr: str, scenario: str = "move") -> bytes:
    """A valid request for ``lan`` about the synthetic ``pnr``."""
    info = sample_information(scenario, pnr=pnr, sending_lan="05", today=date.today())  # type: ignore[arg-type]
    return build_request_envelope(lan, info)


def post_ok(client: Any, body: bytes) -> None:
    """POST a call to the producer from loopback and insist on resultCode OK."""
    response = client.post(
        ENDPOINT_PATH,
        data=body,
        headers={"Content-Type": "text/xml; charset=utf-8"},
        environ_base=LOOPBACK,
    )
    assert response.status_code == 200, response.data
    code = etree.fromstring(response.data).findtext(f".//{{{RESPONDER_NS}}}resultCode")
    assert code == "OK", response.data


def received(drop_root: Path) -> list[str]:
    """Complete file names in a drop's received/ (dot-files are temporaries, never complete)."""
    folder = drop_root / RECEIVED
    return (
        sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if folder.exists()
        else []
    )


def drop_root(hub: Hub, lan: str) -> Path:
    with hub.db.hub.connect() as connection:
        region = get_region(connection, lan)
    assert region is not None and region.drop_url
    return Path(region.drop_url)


def region_of(hub: Hub, lan: str) -> MemberRegion:
    with hub.db.hub.connect() as connection:
        region = get_region(connection, lan)
    assert region is not None
    return region


def rows(hub: Hub, lan: str) -> list[Any]:
    with hub.db.region(lan).connect() as connection:
        return list(connection.execute(select(messages).order_by(messages.c.received_at)))


# -- the files ---------------------------------------------------------------------------------


def test_received_files_hold_the_element_as_received_and_an_importable_sidecar(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    pnr = make_pnr()
    body = envelope("14", pnr).replace(
        b"</tjsr:cervixScreeningInformation>",
        EXTENSION.encode() + b"</tjsr:cervixScreeningInformation>",
    )
    post_ok(client, body)
    reports = {r.lan_code: r for r in deliver_all(hub, FAST, "w1")}
    assert reports["14"].written == 1 and reports["01"].written == 0
    [row] = rows(hub, "14")
    names = received(drop_root(hub, "14"))
    stem = f"{row.received_at.replace(tzinfo=UTC):%Y%m%dT%H%M%SZ}_{row.id}"
    assert names == [f"{stem}.json", f"{stem}.xml"]
    assert all(NAME_RE.fullmatch(n) and message_id_of(n) == row.id for n in names)

    xml = (drop_root(hub, "14") / RECEIVED / f"{stem}.xml").read_bytes()
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    # Swedish characters byte for byte in UTF-8, the extension element kept as sent.
    assert "Region Östergötland".encode() in xml
    assert EXTENSION.encode() in xml
    standalone = etree.fromstring(xml)
    assert standalone.tag == f"{{{RESPONDER_NS}}}cervixScreeningInformation"
    assert canonical_bytes(standalone) == canonical_bytes(information_element(body))
    # Schema-valid: the element is local to the request type, so validate it in its wrapper.
    wrapper = etree.Element(f"{{{RESPONDER_NS}}}ProcessCervixScreeningInformation")
    wrapper.append(standalone)
    assert schema().validate(wrapper), schema().error_log

    sidecar = json.loads((drop_root(hub, "14") / RECEIVED / f"{stem}.json").read_bytes())
    assert sidecar["format"] == "agenthub.received/1"
    assert sidecar["messageId"] == row.id
    assert sidecar["xmlFile"] == f"{stem}.xml"
    assert sidecar["xmlSha256"] == hashlib.sha256(xml).hexdigest()
    assert sidecar["xmlBytes"] == len(xml)
    assert sidecar["personnummer"] == pnr
    info = sidecar["information"]
    assert info["subjectOfCare"]["personId"]["extension"] == pnr
    assert info["sendingRegion"]["region"]["name"] == "Region Östergötland"
    assert info["specimen"]["HPVstatusList"][0]["value"]["code"] == "59311000052101"
    assert info["followUpGroups"] == []
    assert "note" not in json.dumps(info)  # extensions live only in the XML file
    assert sidecar["resultCode"] == "OK" and sidecar["logicalAddress"] == "14"
    raw = (drop_root(hub, "14") / RECEIVED / f"{stem}.json").read_bytes()
    assert "Östergötland".encode() in raw  # UTF-8, not \\u escapes

    assert row.delivery_state == "delivered" and row.delivered_name == f"{stem}.xml"
    with hub.db.region("14").connect() as connection:
        actions = [r.action for r in connection.execute(select(access_log))]
    assert actions.count("message.delivered") == 1


def test_latin1_request_becomes_a_utf8_file(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    text = envelope("14", make_pnr()).decode("utf-8")
    latin1 = text.replace("encoding='UTF-8'", "encoding='ISO-8859-1'").encode("iso-8859-1")
    assert "Östergötland".encode("iso-8859-1") in latin1
    post_ok(client, latin1)
    deliver_all(hub, FAST, "w1")
    [xml_name] = [n for n in received(drop_root(hub, "14")) if n.endswith(".xml")]
    xml = (drop_root(hub, "14") / RECEIVED / xml_name).read_bytes()
    assert "Region Östergötland".encode() in xml
    assert xml.decode("utf-8")  # the whole file is UTF-8


def test_region_b_never_receives_region_a_messages(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    pnrs = {"14": [make_pnr() for _ in range(3)], "01": [make_pnr() for _ in range(2)]}
    for lan, numbers in pnrs.items():
        for pnr in numbers:
            post_ok(client, envelope(lan, pnr))
    deliver_all(hub, FAST, "w1")
    for lan, other in (("14", "01"), ("01", "14")):
        ids = {r.id for r in rows(hub, lan)}
        names = received(drop_root(hub, lan))
        assert len(names) == 2 * len(pnrs[lan])
        assert {message_id_of(n) for n in names} == ids
        everything = b"".join((drop_root(hub, lan) / RECEIVED / n).read_bytes() for n in names)
        for pnr in pnrs[lan]:
            assert pnr.encode() in everything
        for pnr in pnrs[other]:
            assert pnr.encode() not in everything


# -- exactly once --------------------------------------------------------------------------------


def test_a_retry_after_a_crash_finds_its_own_files_and_writes_nothing_twice(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_messages(hub, "14", 7)
    real_record = delivery._record

    def crash(*_args: Any, **_kwargs: Any) -> None:
        raise SystemExit("killed between writing the files and recording the delivery")

    monkeypatch.setattr(delivery, "_record", crash)
    with pytest.raises(SystemExit):
        deliver_region(hub, region_of(hub, "14"), FAST.with_overrides(lanes=1), "w1")
    names = received(drop_root(hub, "14"))
    assert len(names) == 14
    assert all(r.delivery_state == "pending" for r in rows(hub, "14"))
    mtimes = {n: (drop_root(hub, "14") / RECEIVED / n).stat().st_mtime_ns for n in names}

    monkeypatch.setattr(delivery, "_record", real_record)
    # The crashed run's claims are still held by w1; its successor waits for the lease to end.
    later = datetime.now(UTC) + FAST.lease + timedelta(seconds=1)
    with hub.db.region("14").begin() as connection:
        connection.execute(update(messages).values(claimed_until=datetime.now(UTC) - timedelta(1)))
    report = deliver_region(hub, region_of(hub, "14"), FAST, "w2", clock=lambda: later)
    assert (report.written, report.already_there) == (0, 7)
    assert received(drop_root(hub, "14")) == names
    assert {n: (drop_root(hub, "14") / RECEIVED / n).stat().st_mtime_ns for n in names} == mtimes
    assert all(r.delivery_state == "delivered" for r in rows(hub, "14"))


def test_file_taken_by_the_region_before_the_crash_comes_again_with_the_same_message_id(
    hub: Hub,
    regions_ab: tuple[MemberRegion, MemberRegion],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    seed_messages(hub, "14", 3)
    real_record = delivery._record
    monkeypatch.setattr(delivery, "_record", lambda *a, **k: (_ for _ in ()).throw(SystemExit()))
    with pytest.raises(SystemExit):
        deliver_region(hub, region_of(hub, "14"), FAST, "w1")
    # The region's importer takes the files (moves them out) before the hub recorded anything.
    imported = tmp_path / "imported"
    imported.mkdir()
    for name in received(drop_root(hub, "14")):
        (drop_root(hub, "14") / RECEIVED / name).rename(imported / f"first-{name}")
    monkeypatch.setattr(delivery, "_record", real_record)
    with hub.db.region("14").begin() as connection:
        connection.execute(update(messages).values(claimed_until=None))
    report = deliver_region(hub, region_of(hub, "14"), FAST, "w2")
    assert report.written == 3
    again = received(drop_root(hub, "14"))
    first = [p.name.removeprefix("first-") for p in imported.iterdir()]
    # The rule importers follow: the same message id twice is the same message.
    assert sorted(message_id_of(n) for n in again) == sorted(message_id_of(n) for n in first)
    assert all(message_id_of(n) is not None for n in again)


def test_two_workers_racing_never_claim_the_same_message(
    hub: Hub, settings: Any, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    ids = seed_messages(hub, "14", 400)
    other = build_hub(settings)  # its own engines and pools, like a second process
    region = region_of(hub, "14")
    tight = FAST.with_overrides(batch_size=10, lanes=1)
    start = threading.Barrier(2)
    claimed: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def work(h: Hub, name: str) -> None:
        mine: list[str] = []
        try:
            start.wait()
            while True:
                report = deliver_region(h, region, tight, name)
                assert report.drop_error is None and report.skipped is None, report
                if not report.claimed:
                    break
                mine.extend(report.claimed)
        except BaseException as exc:  # surfaced below; a thread must not swallow it
            errors.append(exc)
        claimed[name] = mine

    threads = [threading.Thread(target=work, args=(h, n)) for h, n in ((hub, "a"), (other, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    other.close()
    assert not errors, errors
    a, b = set(claimed["a"]), set(claimed["b"])
    assert len(claimed["a"]) == len(a) and len(claimed["b"]) == len(b)  # nobody claimed twice
    assert not a & b, f"{len(a & b)} messages claimed by both workers"
    assert a | b == set(ids)
    assert a and b, "both workers must have taken part for the race to mean anything"
    names = received(drop_root(hub, "14"))
    assert len(names) == 2 * len(ids)
    assert all(r.delivery_state == "delivered" for r in rows(hub, "14"))


# -- SFTP ------------------------------------------------------------------------------------------


@pytest.fixture
def sftp_region(
    hub: Hub, add_region: Callable[..., MemberRegion], sftp_server: SftpServer, tmp_path: Path
) -> Iterator[tuple[MemberRegion, Path]]:
    """Region A (14) with its drop on the real OpenSSH server, password from a file."""
    base, disk = sftp_server.new_base()
    password_file = tmp_path / "sftp-password"
    password_file.write_text(sftp_server.password + "\n")
    region = add_region(
        "14",
        "SE2321000131",
        "Västra Götalandsregionen",
        drop_url=f"sftp://{sftp_server.username}@{sftp_server.host}:{sftp_server.port}{base}",
        drop_settings={
            "password_file": str(password_file),
            "host_key": sftp_server.host_key_line,
            "connect_timeout": 5,
        },
    )
    add_region("01", "SE2321000016", "Region Stockholm")
    yield region, disk


def test_delivery_to_sftp_writes_the_same_files(
    hub: Hub, sftp_region: tuple[MemberRegion, Path], sftp_server: SftpServer
) -> None:
    region, disk = sftp_region
    ids = seed_messages(hub, "14", 30)
    logins = sftp_server.accepted_logins()
    report = deliver_region(hub, region, FAST, "w1")
    assert (report.written, report.drop_error) == (30, None)
    # One connection per lane for the whole run, not one per file.
    assert sftp_server.accepted_logins() - logins <= FAST.lanes
    names = received(disk)
    assert {message_id_of(n) for n in names} == set(ids) and len(names) == 60
    assert all((disk / RECEIVED / n).stat().st_uid == sftp_server.uid for n in names)
    assert all(r.delivery_state == "delivered" for r in rows(hub, "14"))


def test_sftp_key_authentication_from_a_key_file(
    hub: Hub, add_region: Callable[..., MemberRegion], sftp_server: SftpServer
) -> None:
    base, disk = sftp_server.new_base()
    region = add_region(
        "14",
        "SE2321000131",
        "Västra Götalandsregionen",
        drop_url=f"sftp://{sftp_server.username}@{sftp_server.host}:{sftp_server.port}{base}",
        drop_settings={
            "private_key_file": str(sftp_server.private_key_path),
            "host_key": sftp_server.host_key_line,
        },
    )
    seed_messages(hub, "14", 2)
    assert deliver_region(hub, region, FAST, "w1").written == 2
    assert len(received(disk)) == 4


def test_a_drop_that_is_down_backs_off_and_says_why_then_recovers(
    hub: Hub, sftp_region: tuple[MemberRegion, Path], sftp_server: SftpServer
) -> None:
    region, disk = sftp_region
    seed_messages(hub, "14", 5)
    t0 = datetime.now(UTC)
    with sftp_server.stopped():
        first = deliver_region(hub, region, FAST, "w1", clock=lambda: t0)
        assert first.drop_error and "cannot connect" in first.drop_error
        with hub.db.hub.connect() as connection:
            state = get_state(connection, "14")
        assert state is not None
        assert state.reachable is False and not state.error_permanent
        assert state.consecutive_failures == 1 and state.last_error
        assert "cannot connect" in state.last_error
        assert state.next_attempt_at is not None
        assert state.next_attempt_at - t0 >= timedelta(seconds=FAST.backoff_base_s - 1)
        # Inside the backoff: not even tried.
        assert deliver_region(hub, region, FAST, "w1", clock=lambda: t0).skipped
        # After it: tried again, and the wait doubles.
        t1 = state.next_attempt_at + timedelta(seconds=1)
        deliver_region(hub, region, FAST, "w1", clock=lambda: t1)
        with hub.db.hub.connect() as connection:
            second = get_state(connection, "14")
        assert second is not None and second.consecutive_failures == 2
        assert second.failing_since == state.failing_since
    assert all(r.delivery_state == "pending" and r.claimed_until is None for r in rows(hub, "14"))
    assert received(disk) == []
    later = datetime.now(UTC) + timedelta(hours=1)
    report = deliver_region(hub, region, FAST, "w1", clock=lambda: later)
    assert report.written == 5
    with hub.db.hub.connect() as connection:
        healed = get_state(connection, "14")
    assert healed is not None and healed.reachable is True and healed.consecutive_failures == 0
    assert healed.last_success_at is not None and healed.next_attempt_at is None


def test_changed_host_key_is_permanent_until_the_configuration_changes(
    hub: Hub, sftp_region: tuple[MemberRegion, Path], tmp_path: Path
) -> None:
    region, disk = sftp_region
    seed_messages(hub, "14", 2)
    from tests.sshd import generate_key

    _, stranger = generate_key(tmp_path, "stranger")
    wrong = MemberRegion(
        **{**region.__dict__, "drop_settings": {**region.drop_settings, "host_key": stranger}}
    )
    save_region(hub.db, hub.keys, wrong, system_actor("test"), create=False)
    report = deliver_region(hub, wrong, FAST, "w1")
    assert report.drop_error and "not the pinned key" in report.drop_error
    with hub.db.hub.connect() as connection:
        state = get_state(connection, "14")
    assert state is not None and state.error_permanent
    assert state.next_attempt_at is not None
    assert state.next_attempt_at - datetime.now(UTC) > timedelta(seconds=FAST.backoff_cap_s - 5)
    assert deliver_region(hub, wrong, FAST, "w1").skipped  # no hammering
    # The operator pins the right key again: tried at once, no waiting out the backoff.
    save_region(hub.db, hub.keys, region, system_actor("test"), create=False)
    assert deliver_region(hub, region, FAST, "w1").written == 2
    assert len(received(disk)) == 4


def test_backoff_is_exponential_and_capped() -> None:
    waits = [
        backoff_delay(n, base_s=5, cap_s=60, permanent=False).total_seconds() for n in range(1, 8)
    ]
    assert waits == [5, 10, 20, 40, 60, 60, 60]
    assert backoff_delay(1, base_s=5, cap_s=60, permanent=True) == timedelta(seconds=60)
    assert backoff_delay(10_000, base_s=5, cap_s=900, permanent=False) == timedelta(seconds=900)


# -- one bad message --------------------------------------------------------------------------


def test_a_message_that_cannot_be_rendered_is_retried_then_failed_without_blocking_others(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    ids = seed_messages(hub, "14", 4)
    with hub.db.region("14").begin() as connection:
        connection.execute(
            update(messages).where(messages.c.id == ids[1]).values(body_enc=b"\x01" + b"0" * 40)
        )
    settings = FAST.with_overrides(max_attempts=2)
    report = deliver_region(hub, region_of(hub, "14"), settings, "w1")
    assert (report.written, report.failed) == (3, 1)
    bad = next(r for r in rows(hub, "14") if r.id == ids[1])
    assert bad.delivery_state == "pending" and bad.delivery_attempts == 1
    assert bad.delivery_error and "InvalidTag" in bad.delivery_error
    assert bad.next_attempt_at is not None
    # Not retried before its own backoff ends; then retried and, at max_attempts, failed.
    assert deliver_region(hub, region_of(hub, "14"), settings, "w1").failed == 0
    later = datetime.now(UTC) + timedelta(hours=1)
    assert (
        deliver_region(hub, region_of(hub, "14"), settings, "w1", clock=lambda: later).failed == 1
    )
    bad = next(r for r in rows(hub, "14") if r.id == ids[1])
    assert bad.delivery_state == "failed" and bad.next_attempt_at is None
    assert len(received(drop_root(hub, "14"))) == 6
