"""Crash safety: SIGKILL the worker while it delivers, SIGKILL the web process under load.

Real processes (``python -m hub.cli worker`` / ``serve``), a real OpenSSH server, both
databases. The properties:

* worker: after any number of kills and a restart, every stored message is in its region's drop
  exactly once (two files, one message id) and marked delivered; nothing half-written is visible;
* web: every call answered ``OK`` before the kill is in the store after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree
from sqlalchemy import func, select

from hub.config import Settings
from hub.context import Hub
from hub.contract.names import ENDPOINT_PATH, RESPONDER_NS
from hub.contract.samples import sample_information
from hub.contract.serialise import build_request_envelope
from hub.db.region_tables import access_log, messages
from hub.delivery.files import message_id_of
from hub.delivery.run import deliver_all
from hub.drops.base import RECEIVED
from hub.inbound.seed import seed_messages
from hub.jobs.config import JobSettings
from hub.tenancy.registry import MemberRegion
from tests.sshd import SftpServer, free_port

ROOT = Path(__file__).resolve().parent.parent
MESSAGES_PER_DROP = 1000  # two drops: 2,000 messages per database
pytestmark = pytest.mark.slow


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a hub process on the test's database and data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_") and k != "CI"}
    env.update(
        {
            "AGENTHUB_ENV": "test",
            "AGENTHUB_DATA_DIR": str(settings.data_dir),
            "AGENTHUB_DATABASE_URL": settings.database_url,
            "AGENTHUB_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
            "PYTHONFAULTHANDLER": "1",
        }
    )
    env.update(extra)
    return env


def pending(hub: Hub, lan: str) -> int:
    with hub.db.region(lan).connect() as connection:
        return int(
            connection.execute(
                select(func.count()).where(messages.c.delivery_state != "delivered")
            ).scalar_one()
        )


def check_exactly_once(hub: Hub, lan: str, disk: Path) -> dict[str, int]:
    """Every message of the region in its drop exactly once, complete, and marked delivered."""
    with hub.db.region(lan).connect() as connection:
        stored = {r.id: r for r in connection.execute(select(messages))}
    names = [p.name for p in (disk / RECEIVED).iterdir()]
    complete = [n for n in names if not n.startswith(".")]
    leftovers = [n for n in names if n.startswith(".")]  # temporaries of killed writes: invisible
    per_id = Counter(message_id_of(n) for n in complete)
    assert None not in per_id, [n for n in complete if message_id_of(n) is None]
    assert set(per_id) == set(stored), "files and messages differ"
    assert set(per_id.values()) == {2}, "a message id appears other than once per file type"
    for name in complete:
        if not name.endswith(".json"):
            continue
        sidecar = json.loads((disk / RECEIVED / name).read_bytes())
        xml = (disk / RECEIVED / sidecar["xmlFile"]).read_bytes()
        assert hashlib.sha256(xml).hexdigest() == sidecar["xmlSha256"], "a half-written file"
        etree.fromstring(xml)
        row = stored[sidecar["messageId"]]
        assert row.delivery_state == "delivered" and row.delivered_name == sidecar["xmlFile"]
    with hub.db.region(lan).connect() as connection:
        log_rows = list(
            connection.execute(select(access_log).where(access_log.c.action == "message.delivered"))
        )
    return {
        "files": len(complete),
        "leftover_temporaries": len(leftovers),
        "workers": len({r.actor for r in log_rows}),
        "found_already_there": sum(1 for r in log_rows if "already there" in r.detail),
    }


@pytest.fixture
def two_drops(
    hub: Hub,
    add_region: Callable[..., MemberRegion],
    sftp_server: SftpServer,
    tmp_path: Path,
) -> Iterator[dict[str, Path]]:
    """Region 14 on a folder drop, region 01 on the SFTP server; returns län → folder on disk."""
    base, disk = sftp_server.new_base()
    password_file = tmp_path / "sftp-password"
    password_file.write_text(sftp_server.password)
    add_region("14", "SE2321000131", "Västra Götalandsregionen")
    add_region(
        "01",
        "SE2321000016",
        "Region Stockholm",
        drop_url=f"sftp://{sftp_server.username}@{sftp_server.host}:{sftp_server.port}{base}",
        drop_settings={
            "password_file": str(password_file),
            "host_key": sftp_server.host_key_line,
            "connect_timeout": 5,
        },
    )
    yield {"14": tmp_path / "drops" / "14", "01": disk}


def test_worker_killed_at_random_moments_delivers_every_message_exactly_once(
    hub: Hub, settings: Settings, two_drops: dict[str, Path]
) -> None:
    for lan in two_drops:
        seed_messages(hub, lan, MESSAGES_PER_DROP, rng=random.Random(int(lan)))
    env = process_env(
        settings,
        AGENTHUB_WORKER_DELIVER_MS="100",
        AGENTHUB_WORKER_BATCH="25",
        AGENTHUB_WORKER_LANES="2",
        # Short leases: a killed worker's claims come free quickly for its successor.
        AGENTHUB_WORKER_LEASE_SECONDS="2",
        AGENTHUB_WORKER_CHECK_SECONDS="3600",
        AGENTHUB_WORKER_PICKUP_SECONDS="3600",
    )
    rng = random.Random(4711)
    worker_log = (settings.data_dir / "worker.log").open("ab")
    kills = 0
    deadline = time.monotonic() + 90
    progress: list[int] = []
    while time.monotonic() < deadline:
        left = sum(pending(hub, lan) for lan in two_drops)
        progress.append(left)
        if left == 0:
            break
        worker = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=worker_log,
        )
        if rng.random() < 0.2:
            # Now and then during start-up (imports, migrations, connecting).
            time.sleep(rng.uniform(0.1, 1.5))
        else:
            # Mostly while it delivers: kill it once it has delivered a random number of
            # messages (not after a random time: a fast machine would finish all 2,000 in a
            # few lives, a slow one might never start), then a little later, inside a batch.
            target = left - rng.randint(20, 200)
            started = time.monotonic()
            while time.monotonic() - started < 15 and worker.poll() is None:
                if sum(pending(hub, lan) for lan in two_drops) <= target:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        kills += 1
    # The restart after the last kill: a normal run finishes whatever is left.
    time.sleep(2.5)  # the last victim's leases run out
    finisher = JobSettings(lease_s=2, batch_size=100)
    for _ in range(20):
        if sum(pending(hub, lan) for lan in two_drops) == 0:
            break
        deliver_all(hub, finisher, "finisher")
        time.sleep(0.5)
    worker_log.close()
    assert kills >= 5, f"only {kills} kills: the test proves little"
    print(f"pending before each worker life: {progress}")
    assert progress[-1] < progress[0] // 2, "the killed workers did not do most of the work"
    for lan, disk in two_drops.items():
        assert pending(hub, lan) == 0
        facts = check_exactly_once(hub, lan, disk)
        assert facts["files"] == 2 * MESSAGES_PER_DROP
        # Several worker lives did the work: the kills really landed during delivery.
        assert facts["workers"] >= 2, facts
        print(f"region {lan}: {kills} kills, {facts}")


# -- the web process -------------------------------------------------------------------------


def _start_web(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    log = Path(env["AGENTHUB_DATA_DIR"]) / f"serve-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    # Generous: a restart right after SIGKILL on a loaded 2-CPU machine can take a while.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    tail = log.read_text(encoding="utf-8", errors="replace")[-12000:]
    raise AssertionError(f"agenthub serve did not come up (exit {proc.returncode}):\n{tail}")


def test_web_process_killed_under_inbound_load_keeps_every_call_it_answered_ok(
    hub: Hub,
    settings: Settings,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    port = free_port()
    env = process_env(settings)
    url = f"http://127.0.0.1:{port}{ENDPOINT_PATH}"
    lock = threading.Lock()
    used: set[str] = set()
    answered_ok: list[tuple[str, str]] = []
    unanswered = 0
    stop = threading.Event()
    today = date.today()

    def next_call(n: int) -> tuple[str, str, bytes]:
        with lock:
            pnr = make_pnr()
            while pnr in used:
                pnr = make_pnr()
            used.add(pnr)
        lan = ("14", "01")[n % 2]
        info = sample_information("sample", pnr=pnr, sending_lan="05", today=today)
        return lan, pnr, build_request_envelope(lan, info)

    def client(index: int) -> None:
        nonlocal unanswered
        session = requests.Session()
        n = index
        while not stop.is_set():
            lan, pnr, body = next_call(n)
            n += 1
            try:
                response = session.post(
                    url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=10
                )
            except requests.RequestException:
                with lock:
                    unanswered += 1
                time.sleep(0.05)
                continue
            code = etree.fromstring(response.content).findtext(f".//{{{RESPONDER_NS}}}resultCode")
            if response.status_code == 200 and code == "OK":
                with lock:
                    answered_ok.append((lan, pnr))

    web = _start_web(env, port)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    rng = random.Random(1789)
    kills = 0
    try:
        for _ in range(3):
            time.sleep(rng.uniform(0.8, 2.0))
            web.send_signal(signal.SIGKILL)
            web.wait(10)
            kills += 1
            web = _start_web(env, port)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        web.send_signal(signal.SIGKILL)
        web.wait(10)
    assert kills == 3
    assert len(answered_ok) >= 50, f"only {len(answered_ok)} calls answered OK"
    ciphers: dict[str, Any] = {}
    with hub.db.hub.connect() as connection:
        for lan in ("14", "01"):
            ciphers[lan] = hub.keys.cipher(connection, lan)
    stored: dict[str, set[str]] = {}
    for lan in ("14", "01"):
        with hub.db.region(lan).connect() as connection:
            stored[lan] = set(connection.execute(select(messages.c.pnr_hash)).scalars())
    lost = [pnr for lan, pnr in answered_ok if ciphers[lan].keyed_hash(pnr) not in stored[lan]]
    assert not lost, f"{len(lost)} calls answered OK are not stored"
    print(f"web: {kills} kills, {len(answered_ok)} answered OK, {unanswered} cut off, none lost")
