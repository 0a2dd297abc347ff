"""hub.db: reads that survive a connection lost midway; SQLite stores that stay where they are."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from hub.context import Hub
from hub.db import read_once_more_if_lost
from tests.conftest import sessions_ended_midway

MARK = "/* marked */"


def _marked_read(connection: Connection) -> int:
    return int(connection.execute(text(f"SELECT {MARK} 41 + 1")).scalar_one())


def test_a_read_whose_connection_is_lost_midway_runs_once_more(
    hub: Hub, settings: Any, postgresql_only: None
) -> None:
    with sessions_ended_midway(hub.db.hub.engine, settings.database_url, MARK) as ended:
        assert read_once_more_if_lost(hub.db.hub, _marked_read) == 42
    assert len(ended) == 1


def test_a_second_loss_or_any_other_error_is_raised(
    hub: Hub, settings: Any, postgresql_only: None
) -> None:
    with sessions_ended_midway(hub.db.hub.engine, settings.database_url, MARK, times=2) as ended:
        with pytest.raises(OperationalError):
            read_once_more_if_lost(hub.db.hub, _marked_read)
    assert len(ended) == 2  # once more, and no more
    calls: list[int] = []

    def broken(connection: Connection) -> None:
        calls.append(1)
        connection.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(ProgrammingError):
        read_once_more_if_lost(hub.db.hub, broken)
    assert calls == [1]  # not about the connection: not tried again


# -- SQLite stores: an OK means stored where it can be read again (issue 17) -------------------


@pytest.fixture
def sqlite_only(settings: Any) -> None:
    """Skip the PostgreSQL half: these are about the embedded default's files."""
    if not settings.is_sqlite:
        pytest.skip("a region's SQLite file is the embedded default's")


def _call(client: Any, lan: str, pnr: str) -> tuple[int, str]:
    from tests.test_producer import envelope, fault, post, result

    status, answer = post(client, envelope(lan, pnr))
    return status, (result(answer)[0] if status == 200 else fault(answer)[0])


def test_a_store_deleted_while_serving_gets_server_faults_and_is_not_made_again(
    hub: Hub,
    client: Any,
    settings: Any,
    sqlite_only: None,
    regions_ab: Any,
    make_pnr: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hub.cli import main
    from hub.inbound.views import list_messages
    from tests.conftest import scope_of

    path = hub.db.region_db_path("14")
    assert _call(client, "14", make_pnr()) == (200, "OK")  # the group commit holds a connection
    path.unlink()
    # Never OK for a call written into a file nobody can open again: a Server fault, which the
    # platform sends again; and no empty file made in the store's place.
    for _ in range(2):
        assert _call(client, "14", make_pnr()) == (500, "Server")
    assert not path.exists()
    assert _call(client, "01", make_pnr()) == (200, "OK")  # region 01 is served as before
    from hub.db import StoreMissing

    with pytest.raises(StoreMissing, match="is missing"):
        list_messages(scope_of(hub, "14"))
    for key, value in {
        "AGENTHUB_ENV": "test",
        "AGENTHUB_DATA_DIR": str(settings.data_dir),
        "AGENTHUB_DATABASE_URL": settings.database_url,
    }.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert main(["messages", "--lan", "14"]) == 2
    err = capsys.readouterr().err
    assert "region_14.db is missing" in err and "Traceback" not in err
    assert not path.exists()
    assert main(["messages", "--lan", "01"]) == 0


def test_a_batch_committed_while_its_file_was_deleted_is_a_server_fault(
    hub: Hub,
    client: Any,
    sqlite_only: None,
    regions_ab: Any,
    make_pnr: Callable[[], str],
) -> None:
    from sqlalchemy import event

    path = hub.db.region_db_path("14")
    assert _call(client, "14", make_pnr()) == (200, "OK")
    engine = hub.db.region("14").engine

    def delete_during_insert(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "INSERT INTO" in statement and "messages" in statement and path.exists():
            path.unlink()  # after the connection was lent and checked, before the commit

    event.listen(engine, "before_cursor_execute", delete_during_insert)
    try:
        assert _call(client, "14", make_pnr()) == (500, "Server")
    finally:
        event.remove(engine, "before_cursor_execute", delete_during_insert)
    assert not path.exists()


def test_a_commit_after_the_file_was_replaced_is_refused_before_it_happens(
    hub: Hub, sqlite_only: None, regions_ab: Any
) -> None:
    from hub.db.region_tables import access_log

    path = hub.db.region_db_path("14")
    with pytest.raises(Exception, match="deleted or replaced") as raised:
        with hub.db.region("14").begin() as connection:
            connection.execute(
                access_log.insert().values(at=datetime.now(UTC), actor="t", action="a", detail="")
            )
            replacement = path.with_name("replacement.db")
            replacement.write_bytes(path.read_bytes())
            os.replace(replacement, path)
    assert type(raised.value).__name__ == "StoreMissing"


def test_sqlite_files_are_made_0600_and_the_data_folder_0700(
    tmp_path: Path, make_pnr: Callable[[], str]
) -> None:
    from hub.config import load_settings
    from hub.context import build_hub
    from hub.db.migrate import upgrade_hub
    from hub.tenancy.access import system_actor
    from hub.tenancy.registry import save_region
    from hub.web.app import create_app
    from tests.conftest import active_region

    data = tmp_path / "new" / "data"
    previous = os.umask(
        0o022
    )  # the usual umask: what the hub makes must not lean on a stricter one
    try:
        hub = build_hub(load_settings({"AGENTHUB_ENV": "test", "AGENTHUB_DATA_DIR": str(data)}))
        try:
            upgrade_hub(hub.db)
            region = active_region("14", "SE2321000131", "VGR", drop=str(tmp_path / "drop"))
            save_region(hub.db, hub.keys, region, system_actor("test"), create=False)
            client = create_app(hub, {"TESTING": True}).test_client()
            assert _call(client, "14", make_pnr()) == (200, "OK")
            files = [data / "hub.db", hub.db.region_db_path("14")]
            files += [f.with_name(f.name + "-wal") for f in files]
            files += [f.with_name(f.name[:-4] + "-shm") for f in files[2:]]
            for path in files:
                assert path.exists(), path
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            for folder in (data, data / "regions"):
                assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
            assert stat.S_IMODE((data / "master.key").stat().st_mode) == 0o600
        finally:
            hub.close()
    finally:
        os.umask(previous)


def test_a_missing_store_holds_up_only_its_own_regions_jobs(
    hub: Hub,
    client: Any,
    sqlite_only: None,
    regions_ab: Any,
    make_pnr: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from hub.drops.state import Backoff
    from hub.jobs.config import JobSettings
    from hub.jobs.worker import run_once
    from hub.ops.status import drops_status
    from hub.outbound.receipts import write_receipts
    from hub.outbound.sender import run_senders_once

    assert _call(client, "14", make_pnr()) == (200, "OK")
    assert _call(client, "01", make_pnr()) == (200, "OK")
    hub.db.region_db_path("14").unlink()
    report = run_once(hub, JobSettings())
    delivered = {r.lan_code: (r.delivered, r.skipped) for r in report.deliver}
    assert delivered["01"] == (1, None)
    assert delivered["14"][1] is not None and "is missing" in delivered["14"][1]
    assert "01" in report.purge and "14" not in report.purge
    write_receipts(hub, Backoff())
    run_senders_once(hub)
    status = {s.lan_code: s for s in drops_status(hub, JobSettings(), check=False)}
    assert status["14"].last_error is not None and "is missing" in status["14"].last_error
    assert "Traceback" not in caplog.text
    assert not hub.db.region_db_path("14").exists()
