"""The application factory, health, and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hub.app import create_app
from hub.cli import main
from hub.context import Hub

REPO = Path(__file__).resolve().parent.parent


def test_factory_uses_the_given_hub_and_test_config(hub: Hub) -> None:
    app = create_app(hub, {"TESTING": True})
    assert app.testing and app.extensions["agenthub"] is hub


def test_health_reports_database(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json["database"] == "ok"


def test_endpoint_rejects_other_methods(client: Any) -> None:
    from hub.contract.names import ENDPOINT_PATH

    assert client.put(ENDPOINT_PATH).status_code == 405
    assert client.get(ENDPOINT_PATH + "?nothing").status_code == 404


def _env(settings: Any) -> dict[str, str]:
    return {
        "AGENTHUB_ENV": "test",
        "AGENTHUB_DATA_DIR": str(settings.data_dir),
        "AGENTHUB_DATABASE_URL": settings.database_url,
    }


def test_the_production_entry_point_freezes_its_start_up_heap(settings: Any) -> None:
    # In a process of its own: freezing is for a serving process, not for this test run.
    script = (
        "import gc; from hub.wsgi import app; "
        "print(gc.get_freeze_count(), app.extensions['agenthub'].settings.env)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_")},
            **_env(settings),
        },
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    frozen, env = done.stdout.split()
    # The modules, compiled schema and Spyne interface are out of the collector's way.
    assert int(frozen) > 10_000 and env == "test"


def test_cli_region_add_list_and_messages(
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make_pnr: Callable[[], str],
) -> None:
    for key, value in _env(settings).items():
        monkeypatch.setenv(key, value)
    assert (
        main(
            [
                "region",
                "add",
                "--lan",
                "14",
                "--hsa-id",
                "SE2321000131",
                "--name",
                "Västra Götalandsregionen",
                "--drop",
                str(settings.data_dir / "drops/14"),
                "--agreement-signed",
                "2026-01-01",
                "--platform-confirmed",
                "2026-01-02",
            ]
        )
        == 0
    )
    assert main(["region", "add", "--lan", "14", "--hsa-id", "SE2321000131", "--name", "x"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["region", "list"]) == 0
    out = capsys.readouterr().out
    assert "14" in out and "Västra Götalandsregionen" in out and "active" in out
    assert main(["regions", "sync", str(REPO / "regions")]) == 0
    assert "01 added" in capsys.readouterr().out
    assert main(["messages", "--lan", "99"]) == 2
    assert main(["messages", "--lan", "14"]) == 0


def test_cli_reports_bad_configuration_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "region", "list"],
        env={"AGENTHUB_ENV": "nonsense", "AGENTHUB_DATA_DIR": str(tmp_path), "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "AGENTHUB_ENV must be one of" in result.stderr and "Traceback" not in result.stderr


def test_cli_sample_prints_a_request_the_producer_accepts(
    client: Any, regions_ab: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.contract.names import ENDPOINT_PATH

    assert main(["sample", "--lan", "14", "--scenario", "treatment", "--seed", "3"]) == 0
    body = capsys.readouterr().out.encode()
    response = client.post(ENDPOINT_PATH, data=body, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code == 200 and b">OK<" in response.data
