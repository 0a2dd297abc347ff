"""``agenthub drops status``: reachable or not, last success, backlog, oldest undelivered age."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from hub.cli import main
from hub.config import Settings
from hub.context import Hub
from hub.db.region_tables import messages
from hub.delivery.run import deliver_all
from hub.inbound.seed import seed_messages
from hub.jobs.config import JobSettings
from hub.jobs.worker import heartbeat
from hub.ops.status import age, drops_status, format_status, workers_seen
from hub.tenancy.registry import MemberRegion

FAST = JobSettings(backoff_base_s=5, backoff_cap_s=60, lanes=1)


@pytest.fixture
def a_up_b_down(hub: Hub, add_region: Callable[..., MemberRegion], tmp_path: Path) -> None:
    """Region A on a working folder drop; region B on an SFTP server nobody listens on."""
    add_region("14", "SE2321000131", "Västra Götalandsregionen")
    (tmp_path / "pw").write_text("x")
    add_region(
        "01",
        "SE2321000016",
        "Region Stockholm",
        drop_url="sftp://hub@127.0.0.1:1/drop",
        drop_settings={
            "password_file": str(tmp_path / "pw"),
            "host_key": "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "connect_timeout": 2,
        },
    )


def test_status_shows_reachability_last_success_backlog_and_oldest_age(
    hub: Hub, a_up_b_down: None
) -> None:
    seed_messages(hub, "14", 4)
    seed_messages(hub, "01", 3)
    deliver_all(hub, FAST, "w1")
    seed_messages(hub, "14", 2)  # arrived after the delivery run: A's backlog
    old = datetime.now(UTC) - timedelta(hours=5)
    with hub.db.region("01").begin() as connection:
        connection.execute(update(messages).values(received_at=old))
    rows = {r.lan_code: r for r in drops_status(hub, FAST, check=False)}
    a, b = rows["14"], rows["01"]
    assert a.reachable is True and a.last_success_at is not None and a.backlog == 2
    assert a.oldest_pending_at is not None and a.last_error is None
    assert b.reachable is False and b.last_success_at is None and b.backlog == 3
    assert b.oldest_pending_at is not None and b.oldest_pending_at <= old + timedelta(seconds=1)
    assert b.last_error and "cannot connect" in b.last_error and not b.error_permanent
    now = datetime.now(UTC)
    text = format_status(list(rows.values()), [], now)
    assert "01   NO" in text and "14   yes" in text
    assert " 5h " in text  # B's oldest undelivered message
    assert "cannot connect" in text and "no worker seen recently" in text


def test_status_probes_drops_unless_told_not_to(hub: Hub, a_up_b_down: None) -> None:
    # Nothing recorded yet: unknown without probing, the truth with it.
    assert {r.reachable for r in drops_status(hub, FAST, check=False)} == {None}
    rows = {r.lan_code: r for r in drops_status(hub, FAST, check=True)}
    assert rows["14"].reachable is True and rows["01"].reachable is False


def test_status_lists_workers_seen_alive(hub: Hub, a_up_b_down: None) -> None:
    heartbeat(hub, "host:1:abc", datetime.now(UTC) - timedelta(minutes=3))
    [seen] = workers_seen(hub)
    assert seen.worker_id == "host:1:abc"
    assert "worker host:1:abc up 3m" in format_status([], [seen], datetime.now(UTC))
    assert workers_seen(hub, datetime.now(UTC) + timedelta(minutes=5)) == []


def test_drops_status_command_prints_the_table_and_json_and_fails_when_a_drop_is_down(
    hub: Hub,
    settings: Settings,
    a_up_b_down: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AGENTHUB_ENV", "test")
    monkeypatch.setenv("AGENTHUB_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("AGENTHUB_DATABASE_URL", settings.database_url)
    seed_messages(hub, "01", 1)
    assert main(["drops", "status"]) == 1  # a drop is down: monitoring sees a failure
    out = capsys.readouterr().out
    assert "län" in out and "14   yes" in out and "01   NO" in out
    assert main(["drops", "status", "--no-check", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    regions = {r["lan_code"]: r for r in data["regions"]}
    assert regions["01"]["backlog"] == 1 and regions["01"]["reachable"] is False
    assert regions["14"]["reachable"] is True
    # After `drops retry` the backoff is gone; the next worker run tries at once.
    assert main(["drops", "retry", "--lan", "01"]) == 0
    capsys.readouterr()
    assert main(["drops", "status", "--no-check", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert {r["lan_code"]: r for r in data["regions"]}["01"]["next_attempt_at"] is None


def test_ages_are_short_and_human() -> None:
    now = datetime.now(UTC)
    assert [age(now - timedelta(seconds=s), now) for s in (5, 125, 7300, 200000)] == [
        "5s",
        "2m",
        "2h",
        "2d",
    ]
    assert age(None, now) == "-"
