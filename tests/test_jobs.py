"""The job runner: scheduler set-up, claims, extract pick-up, retention, drop configuration, and
``agenthub serve`` + ``agenthub worker`` end to end."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree
from sqlalchemy import func, select, update

from hub.config import ConfigError, Settings
from hub.context import Hub, build_hub
from hub.contract.names import ENDPOINT_PATH, RESPONDER_NS
from hub.contract.samples import sample_information
from hub.contract.serialise import build_request_envelope
from hub.db.claims import claim, release
from hub.db.region_tables import access_log, extracts, messages
from hub.delivery.files import message_id_of
from hub.delivery.run import deliver_all
from hub.drops.base import ARCHIVE, EXTRACTS, RECEIVED
from hub.drops.local import LocalDrop
from hub.drops.regional import DropConfigError, drop_for_region, drop_location
from hub.drops.state import get_state
from hub.inbound.retention import purge_region
from hub.inbound.seed import seed_messages
from hub.intake import pickup as extracts_module
from hub.intake.pickup import pickup_all, pickup_region, waiting_for_intake
from hub.jobs.config import JobSettings, load_job_settings
from hub.jobs.worker import build_scheduler
from hub.tenancy.registry import MemberRegion, get_region
from tests.sshd import SftpServer, free_port

ROOT = Path(__file__).resolve().parent.parent
FAST = JobSettings(backoff_base_s=5, backoff_cap_s=60, lanes=2, batch_size=50)


def region_of(hub: Hub, lan: str) -> MemberRegion:
    with hub.db.hub.connect() as connection:
        region = get_region(connection, lan)
    assert region is not None
    return region


def drop_dir(hub: Hub, lan: str) -> Path:
    return Path(region_of(hub, lan).drop_url or "")


def put_extract(hub: Hub, lan: str, name: str, data: bytes) -> None:
    """A region drops a file the way the dot-file rule says: temporary name, then rename."""
    folder = drop_dir(hub, lan) / EXTRACTS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f".{name}.part").write_bytes(data)
    (folder / f".{name}.part").rename(folder / name)


# -- the scheduler -------------------------------------------------------------------------------


def test_worker_schedules_every_job_coalesced_one_instance_and_the_consumer_jobs(
    hub: Hub,
) -> None:
    scheduler = build_scheduler(hub, FAST, "w1")
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {
        "deliver",
        "pickup",
        "check",
        "purge",
        "heartbeat",
        "outbox.send",
        "outbox.receipts",
    }
    for job in jobs.values():
        assert job.coalesce is True and job.max_instances == 1, job.id
    assert not scheduler.running  # building it starts nothing (no threads in web workers)


def test_job_settings_come_from_the_environment_and_bad_values_name_the_variable() -> None:
    assert load_job_settings({}) == JobSettings()
    custom = load_job_settings({"AGENTHUB_WORKER_LANES": "2", "AGENTHUB_RETENTION_BODY_DAYS": "0"})
    assert (custom.lanes, custom.body_retention_days) == (2, 0)
    with pytest.raises(ConfigError, match="AGENTHUB_WORKER_LEASE_SECONDS"):
        load_job_settings({"AGENTHUB_WORKER_LEASE_SECONDS": "soon"})
    with pytest.raises(ConfigError, match="AGENTHUB_WORKER_BATCH"):
        load_job_settings({"AGENTHUB_WORKER_BATCH": "0"})


# -- claims --------------------------------------------------------------------------------------


def test_claims_are_exclusive_until_the_lease_ends(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    ids = seed_messages(hub, "14", 10)
    engine = hub.db.region("14")

    def ready(_now: Any) -> Any:
        return messages.c.delivery_state == "pending"

    lease = timedelta(seconds=30)
    now = datetime.now(UTC)

    def take(worker: str, at: datetime, limit: int = 6) -> list[str]:
        rows = claim(
            engine,
            messages,
            worker,
            ready=ready,
            order_by=[messages.c.received_at],
            limit=limit,
            lease=lease,
            now=at,
        )
        return [r.id for r in rows]

    first = take("a", now)
    assert first == ids[:6]  # oldest first
    second = take("b", now)
    assert second == ids[6:]
    assert take("c", now) == []
    assert release(engine, messages, first[:2], "b") == 0  # not b's to give back
    assert release(engine, messages, first[:2], "a") == 2
    assert take("c", now) == first[:2]
    # A dead worker's claims come free when its lease ends.
    assert sorted(take("d", now + lease + timedelta(seconds=1), limit=20)) == sorted(ids)


# -- extracts ------------------------------------------------------------------------------------


def test_extracts_are_checksummed_archived_and_recorded_for_intake(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    files = {"kallelser-2025-03.csv": "pnr;datum\nÅsa;2025\n".encode(), "b.txt": b"x" * 5000}
    for name, data in files.items():
        put_extract(hub, "14", name, data)
    reports = {r.lan_code: r for r in pickup_all(hub, FAST, "w1")}
    assert reports["14"].archived == 2 and reports["01"].archived == 0
    rows = waiting_for_intake(hub, "14")
    assert sorted(r.original_name for r in rows) == sorted(files)
    archive = drop_dir(hub, "14") / ARCHIVE
    for row in rows:
        data = (archive / row.archived_name).read_bytes()
        assert data == files[row.original_name]
        assert row.sha256 == hashlib.sha256(data).hexdigest() and row.size == len(data)
        assert row.archived_name.endswith(row.original_name)
    assert [p.name for p in (drop_dir(hub, "14") / EXTRACTS).iterdir()] == [".archive"]
    assert waiting_for_intake(hub, "01") == []
    assert sum(r.archived for r in pickup_all(hub, FAST, "w1")) == 0  # nothing twice
    with hub.db.region("14").connect() as connection:
        logged = connection.execute(
            select(func.count()).where(access_log.c.action == "extract.picked_up")
        ).scalar_one()
    assert logged == 2


@pytest.mark.parametrize("moved", [False, True], ids=["before-move", "after-move"])
def test_a_pickup_killed_after_claiming_is_finished_by_the_next_run(
    hub: Hub,
    regions_ab: tuple[MemberRegion, MemberRegion],
    monkeypatch: pytest.MonkeyPatch,
    moved: bool,
) -> None:
    put_extract(hub, "14", "one.csv", b"1")
    put_extract(hub, "14", "two.csv", b"2")
    real_archive = extracts_module._archive

    def die(*_args: Any) -> str:
        raise SystemExit("killed after the row was inserted")

    monkeypatch.setattr(extracts_module, "_archive", die)
    with pytest.raises(SystemExit):
        pickup_region(hub, region_of(hub, "14"), FAST, "w1")
    monkeypatch.setattr(extracts_module, "_archive", real_archive)
    # The row says "claimed" by a dead worker; the file is still where the region put it.
    with hub.db.region("14").begin() as connection:
        [claimed] = connection.execute(select(extracts)).all()
        assert claimed.state == "claimed"
        if moved:  # the worker died after moving the file, before recording that
            (drop_dir(hub, "14") / EXTRACTS / claimed.original_name).rename(
                drop_dir(hub, "14") / ARCHIVE / claimed.archived_name
            )
        connection.execute(update(extracts).values(claimed_until=datetime.now(UTC) - timedelta(1)))
    report = pickup_region(hub, region_of(hub, "14"), FAST, "w2")
    assert report.recovered == 1
    rows = waiting_for_intake(hub, "14")
    assert sorted(r.original_name for r in rows) == ["one.csv", "two.csv"]
    assert len({r.archived_name for r in rows}) == 2
    assert len(list((drop_dir(hub, "14") / ARCHIVE).iterdir())) == 2


def test_two_workers_picking_up_at_once_record_each_extract_once(
    hub: Hub, settings: Settings, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    for i in range(20):
        put_extract(hub, "14", f"extract-{i:02}.csv", f"rad {i}\n".encode())
    other = build_hub(settings)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(h: Hub, name: str) -> None:
        try:
            start.wait()
            pickup_region(h, region_of(h, "14"), FAST, name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=a) for a in ((hub, "a"), (other, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    other.close()
    assert not errors, errors
    rows = waiting_for_intake(hub, "14")
    assert sorted(r.original_name for r in rows) == [f"extract-{i:02}.csv" for i in range(20)]
    assert len(list((drop_dir(hub, "14") / ARCHIVE).iterdir())) == 20


# -- retention ------------------------------------------------------------------------------------


def test_retention_empties_only_bodies_delivered_long_ago_and_keeps_the_record(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    body = build_request_envelope(
        "14", sample_information("move", pnr=make_pnr(), sending_lan="05", today=date.today())
    )
    answer = client.post(ENDPOINT_PATH, data=body, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert b"<tjsr:resultCode>OK" in answer.data or b">OK<" in answer.data
    ids = seed_messages(hub, "14", 3)
    deliver_all(hub, FAST, "w1")
    seed_messages(hub, "14", 1, rng=__import__("random").Random(99))  # pending: never purged
    old = datetime.now(UTC) - timedelta(days=91)
    engine = hub.db.region("14")
    with engine.begin() as connection:
        connection.execute(
            update(messages)
            .where(messages.c.delivery_state == "delivered")
            .values(delivered_at=old)
        )
        connection.execute(
            update(messages)
            .where(messages.c.id == ids[2])
            .values(delivered_at=datetime.now(UTC) - timedelta(days=10))
        )
    assert purge_region(hub, "14", 0) == 0
    assert purge_region(hub, "14", FAST.body_retention_days) == 3  # the posted one, ids[0], ids[1]
    assert purge_region(hub, "14", FAST.body_retention_days) == 0
    with engine.connect() as connection:
        rows = {r.id: r for r in connection.execute(select(messages))}
        purged_log = connection.execute(
            select(access_log.c.detail).where(access_log.c.action == "messages.purged")
        ).scalar_one()
    assert len(rows) == 5 and "3 bodies" in purged_log
    purged = [r for r in rows.values() if r.body_enc is None]
    assert len(purged) == 3 and all(r.fields_enc is None for r in purged)
    assert all(r.delivery_state == "delivered" and r.pnr_enc for r in purged)
    assert rows[ids[2]].body_enc is not None
    assert all(r.body_enc is not None for r in rows.values() if r.delivery_state == "pending")
    # A resend of a purged message is still recognised (the content hash is kept).
    again = client.post(ENDPOINT_PATH, data=body, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert again.status_code == 200 and b"OK" in again.data
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(messages)).scalar_one() == 5


# -- drop configuration -------------------------------------------------------------------------


def test_drop_settings_hold_references_to_secrets_never_secrets(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = region_of(hub, "14")

    def region(url: str | None, **drop_settings: Any) -> MemberRegion:
        return MemberRegion(**{**base.__dict__, "drop_url": url, "drop_settings": drop_settings})

    sftp = "sftp://hub@sftp.example.se:2222/drop"
    pin = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    with pytest.raises(DropConfigError, match="must not hold secrets"):
        drop_for_region(hub, region(sftp, password="hemligt", host_key=pin))
    with pytest.raises(DropConfigError, match="unknown drop_settings"):
        drop_for_region(hub, region(sftp, pasword_file="x", host_key=pin))
    with pytest.raises(DropConfigError, match="HUB_TEST_PW"):
        drop_for_region(hub, region(sftp, password_env="HUB_TEST_PW", host_key=pin))
    monkeypatch.setenv("HUB_TEST_PW", "hemligt")
    drop = drop_for_region(hub, region(sftp, password_env="HUB_TEST_PW", host_key=pin))
    assert "hemligt" not in repr(drop)
    (hub.settings.data_dir / "pw").write_text("från-fil\n")
    assert (
        drop_for_region(hub, region(sftp, password_file="pw", host_key=pin)).settings.password
        == "från-fil"
    )  # type: ignore[attr-defined]
    with pytest.raises(DropConfigError, match="cannot read"):
        drop_for_region(hub, region(sftp, password_file="missing", host_key=pin))
    with pytest.raises(DropConfigError, match="host key"):
        drop_for_region(hub, region(sftp, password_file="pw", host_key="not a key"))
    with pytest.raises(DropConfigError, match="other"):
        drop_for_region(hub, region("/srv/drop", file_mode="0644"))
    default = drop_for_region(hub, region(None))
    assert isinstance(default, LocalDrop)
    assert default.root == hub.settings.data_dir / "drops" / "14"
    assert drop_location(hub, region("sftp://hub:hemligt@h/x")) == "sftp://hub:***@h/x"
    with pytest.raises(DropConfigError):
        drop_for_region(hub, region("sftp://hub:hemligt@h/x", host_key=pin))


# -- serve + worker, end to end ------------------------------------------------------------------


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_")}
    env.update(
        AGENTHUB_ENV="test",
        AGENTHUB_DATA_DIR=str(settings.data_dir),
        AGENTHUB_DATABASE_URL=settings.database_url,
        AGENTHUB_LOG_LEVEL="warning",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def _wait(predicate: Callable[[], bool], seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_serve_and_worker_deliver_within_seconds_and_serve_needs_no_worker(
    hub: Hub,
    settings: Settings,
    add_region: Callable[..., MemberRegion],
    sftp_server: SftpServer,
    make_pnr: Callable[[], str],
    tmp_path: Path,
) -> None:
    base, sftp_disk = sftp_server.new_base()
    (tmp_path / "pw").write_text(sftp_server.password)
    add_region("14", "SE2321000131", "Västra Götalandsregionen")
    add_region(
        "01",
        "SE2321000016",
        "Region Stockholm",
        drop_url=f"sftp://{sftp_server.username}@{sftp_server.host}:{sftp_server.port}{base}",
        drop_settings={
            "password_file": str(tmp_path / "pw"),
            "host_key": sftp_server.host_key_line,
        },
    )
    disks = {"14": tmp_path / "drops" / "14", "01": sftp_disk}
    env = _env(settings, AGENTHUB_WORKER_DELIVER_MS="250")
    port = free_port()
    url = f"http://127.0.0.1:{port}{ENDPOINT_PATH}"
    web = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--port", str(port)], cwd=ROOT, env=env
    )
    worker: subprocess.Popen[bytes] | None = None

    def post(lan: str) -> str:
        body = build_request_envelope(
            lan, sample_information("sample", pnr=make_pnr(), sending_lan="05", today=date.today())
        )
        answer = requests.post(url, data=body, headers={"Content-Type": "text/xml"}, timeout=10)
        code = etree.fromstring(answer.content).findtext(f".//{{{RESPONDER_NS}}}resultCode")
        assert (answer.status_code, code) == (200, "OK")
        with hub.db.region(lan).connect() as connection:
            newest = connection.execute(
                select(messages.c.id).order_by(messages.c.received_at.desc()).limit(1)
            ).scalar_one()
        return str(newest)

    def delivered(lan: str, message_id: str) -> bool:
        folder = disks[lan] / RECEIVED
        return folder.exists() and any(
            message_id_of(p.name) == message_id for p in folder.iterdir()
        )

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"], cwd=ROOT, env=env)

    try:
        _wait(lambda: _healthy(port), 30)
        worker = start_worker()
        time.sleep(2)  # let it start up; the clock below is about delivery, not imports
        for lan in ("14", "01"):
            message_id = post(lan)
            took = _wait(lambda lan=lan, m=message_id: delivered(lan, m), 10)  # type: ignore[misc]
            assert took < 5, f"region {lan}: {took:.1f}s from OK to received/"
        # The worker stops (SIGTERM: it finishes what it runs, then exits cleanly)…
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        worker = None
        # …and the producer goes on answering OK; the messages wait, stored.
        waiting = {lan: post(lan) for lan in ("14", "01")}
        time.sleep(1.5)
        assert not any(delivered(lan, m) for lan, m in waiting.items())
        worker = start_worker()
        for lan, message_id in waiting.items():
            _wait(lambda lan=lan, m=message_id: delivered(lan, m), 15)  # type: ignore[misc]
    finally:
        for proc in (worker, web):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_extracts_are_picked_up_from_an_sftp_drop_too(
    hub: Hub, add_region: Callable[..., MemberRegion], sftp_server: SftpServer, tmp_path: Path
) -> None:
    base, disk = sftp_server.new_base()
    (tmp_path / "pw").write_text(sftp_server.password)
    region = add_region(
        "14",
        "SE2321000131",
        "Västra Götalandsregionen",
        drop_url=f"sftp://{sftp_server.username}@{sftp_server.host}:{sftp_server.port}{base}",
        drop_settings={
            "password_file": str(tmp_path / "pw"),
            "host_key": sftp_server.host_key_line,
        },
    )
    assert pickup_region(hub, region, FAST, "w1").archived == 0  # creates the layout
    data = "personnummer;åtgärd\n".encode()
    (disk / EXTRACTS / "utdrag.csv").write_bytes(data)
    os.chown(disk / EXTRACTS / "utdrag.csv", sftp_server.uid, sftp_server.gid)
    assert pickup_region(hub, region, FAST, "w1").archived == 1
    [row] = waiting_for_intake(hub, "14")
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert (disk / ARCHIVE / row.archived_name).read_bytes() == data
    assert not (disk / EXTRACTS / "utdrag.csv").exists()


def test_concurrent_claims_are_disjoint_and_never_exceed_their_limit(
    hub: Hub, settings: Settings, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    ids = seed_messages(hub, "14", 120)
    hubs = [hub] + [build_hub(settings) for _ in range(3)]
    start = threading.Barrier(len(hubs))
    taken: list[list[str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(h: Hub, name: str) -> None:
        try:
            start.wait()
            while True:
                rows = claim(
                    h.db.region("14"),
                    messages,
                    name,
                    ready=lambda _now: messages.c.delivery_state == "pending",
                    order_by=[messages.c.received_at],
                    limit=5,
                    lease=timedelta(minutes=5),
                )
                if not rows:
                    return
                with lock:
                    taken.append([r.id for r in rows])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(h, f"w{i}")) for i, h in enumerate(hubs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for h in hubs[1:]:
        h.close()
    assert not errors, errors
    assert max(len(batch) for batch in taken) <= 5
    flat = [i for batch in taken for i in batch]
    assert sorted(flat) == sorted(ids)  # every row once, none twice


def test_sigterm_ends_the_worker_within_seconds_and_records_the_call_in_flight_as_interrupted(
    hub: Hub,
    settings: Settings,
    add_region: Callable[..., MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    from hub.db.region_tables import outbox, outbox_attempts
    from tests.conftest import TricklingServer, approve, http_head

    add_region("14", "SE2321000131", "Västra Götalandsregionen")
    add_region("01", "SE2321000016", "Region Stockholm")
    info = sample_information("sample", pnr=make_pnr(), sending_lan="14", today=date.today())
    record_id = approve(hub, "14", "01", info).record_id
    # A destination that answers 200, Content-Length: 100000, then one byte every 0.5 s: the
    # read timeout never fires, and the call's deadline (25 s here) is far off.
    destination = TricklingServer(http_head(length=100_000), b"x" * 100_000, interval=0.5)
    env = _env(
        settings,
        AGENTHUB_NTJP_URL=destination.url + ENDPOINT_PATH,
        AGENTHUB_SEND_TIMEOUT_MS="20000",
        AGENTHUB_SEND_POLL_MS="200",
    )
    worker = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"], cwd=ROOT, env=env)
    try:
        _wait(lambda: destination.connections >= 1, 30)
        time.sleep(1.0)  # the call is well under way, its answer trickling
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert worker.wait(10) == 0
        assert time.monotonic() - started < 5
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        destination.stop()
    with hub.db.region("14").connect() as connection:
        record = connection.execute(
            select(outbox.c.state, outbox.c.attempts, outbox.c.claimed_by).where(
                outbox.c.id == record_id
            )
        ).one()
        logged = connection.execute(select(outbox_attempts.c.attempt, outbox_attempts.c.code)).all()
    # The attempt is counted once and recorded; the record waits for the next worker.
    assert (record.state, record.attempts, record.claimed_by) == ("queued", 1, None)
    assert [tuple(row) for row in logged] == [(1, "INTERRUPTED")]
    assert destination.connections == 1


@pytest.mark.parametrize("kind", ["local", "sftp"])
def test_a_linked_folder_in_a_drop_never_hands_another_regions_files_to_the_pickup(
    hub: Hub,
    add_region: Callable[..., MemberRegion],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    from hub.jobs.worker import run_once

    disks: dict[str, Path] = {}
    if kind == "local":
        for lan, hsa, name in (("14", "SE2321000131", "VGR"), ("01", "SE2321000016", "Sthlm")):
            add_region(lan, hsa, name)
            disks[lan] = tmp_path / "drops" / lan
    else:
        server: SftpServer = request.getfixturevalue("sftp_server")
        (tmp_path / "pw").write_text(server.password)
        for lan, hsa, name in (("14", "SE2321000131", "VGR"), ("01", "SE2321000016", "Sthlm")):
            base, disks[lan] = server.new_base()
            add_region(
                lan,
                hsa,
                name,
                drop_url=f"sftp://{server.username}@{server.host}:{server.port}{base}",
                drop_settings={
                    "password_file": str(tmp_path / "pw"),
                    "host_key": server.host_key_line,
                },
            )
    seed_messages(hub, "14", 3)
    assert sum(r.delivered for r in deliver_all(hub, FAST, "w1")) == 3
    received = sorted(p.name for p in (disks["14"] / RECEIVED).iterdir())
    assert len(received) == 6
    run_once(hub, FAST)  # 01's layout exists, its drop works
    # Region 01 (whose systems may write in its drop) puts a link where its extracts/ was:
    # ln -s ../14/received extracts
    linked = disks["01"] / EXTRACTS
    subprocess.run(["rm", "-rf", str(linked)], check=True)
    linked.symlink_to(os.path.relpath(disks["14"] / RECEIVED, disks["01"]))
    report = run_once(hub, FAST)  # agenthub worker --once
    pickup = {r.lan_code: r for r in report.pickup}
    assert pickup["01"].archived == 0
    assert report.check["01"] is False  # the probe found the link first: a permanent failure
    with hub.db.hub.connect() as connection:
        state = get_state(connection, "01")
    assert state is not None and state.error_permanent
    assert state.last_error is not None and "symbolic link" in state.last_error
    # 14 lost nothing; 01's intake holds nothing of 14's.
    assert sorted(p.name for p in (disks["14"] / RECEIVED).iterdir()) == received
    assert waiting_for_intake(hub, "01") == []
    with hub.db.region("01").connect() as connection:
        assert connection.execute(select(func.count()).select_from(extracts)).scalar_one() == 0
    with hub.db.region("14").connect() as connection:
        states = connection.execute(select(messages.c.delivery_state)).scalars().all()
    assert states == ["delivered"] * 3
