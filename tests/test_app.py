"""The application factory, health, and the command line."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from hub.cli import main
from hub.context import Hub
from hub.web.app import create_app
from tests.sshd import free_port

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
        "import gc; before = gc.get_freeze_count(); from hub.wsgi import app; "
        "print(before, gc.get_freeze_count(), app.extensions['agenthub'].settings.env)"
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
    before, frozen, env = done.stdout.split()
    # The modules, compiled schema and Spyne interface are out of the collector's way.
    assert int(before) == 0 and int(frozen) > 0 and env == "test"


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


def _qa_env(tmp_path: Path) -> dict[str, str]:
    """A QA environment on SQLite under ``tmp_path``, with a master key of its own."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_")},
        "AGENTHUB_ENV": "qa",
        "AGENTHUB_DATA_DIR": str(tmp_path / "data"),
        "AGENTHUB_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "PYTHONPATH": str(REPO),
    }


def test_serve_runs_the_development_server_only_in_dev_and_test() -> None:
    from hub.config import WEB_WORKERS, load_settings
    from hub.web.server import ServeError, choose_workers

    dev = load_settings({"AGENTHUB_ENV": "dev"})
    prod = load_settings(
        {"AGENTHUB_ENV": "prod", "AGENTHUB_MASTER_KEY": base64.b64encode(bytes(32)).decode()}
    )
    assert choose_workers(dev, None) == 0  # a newcomer's `agenthub serve`: one process
    assert choose_workers(dev, 3) == 3
    assert choose_workers(prod, None) == WEB_WORKERS
    assert choose_workers(prod, 2) == 2
    with pytest.raises(ServeError, match="development server is for AGENTHUB_ENV=dev or test"):
        choose_workers(prod, 0)
    with pytest.raises(ServeError, match="--workers"):
        choose_workers(dev, -1)


def test_serve_outside_dev_runs_gunicorn_and_refuses_the_development_server(
    tmp_path: Path,
) -> None:
    env = _qa_env(tmp_path)
    cli = [sys.executable, "-m", "hub.cli"]
    refused = subprocess.run(
        [*cli, "serve", "--workers", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "not qa" in refused.stderr
    assert "Traceback" not in refused.stderr
    # QA migrates explicitly (only dev migrates by itself on start).
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*cli, "serve", "--port", str(port)], env=env, stdout=out, stderr=out, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and health is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
            except requests.RequestException:
                time.sleep(0.2)
        assert health == {"database": "ok", "env": "qa", "status": "ok"}, log.read_text()
        # gunicorn, with as many workers as deploy/gunicorn.conf.py runs.
        while time.monotonic() < deadline and log.read_text().count("Booting worker") < 4:
            time.sleep(0.2)
        text = log.read_text()
        assert "Using worker: gthread" in text and text.count("Booting worker") == 4, text
        assert "development server" not in text
    finally:
        server.terminate()
        server.wait(30)


def test_the_deploy_configuration_runs_the_web_process_as_agenthub_serve_does() -> None:
    import runpy

    from hub.config import WEB_REQUEST_TIMEOUT_SECONDS, WEB_WORKERS

    conf = runpy.run_path(str(REPO / "deploy" / "gunicorn.conf.py"))
    assert (conf["workers"], conf["timeout"], conf["worker_class"]) == (4, 28, "gthread")
    assert (conf["workers"], conf["timeout"]) == (WEB_WORKERS, WEB_REQUEST_TIMEOUT_SECONDS)
    assert conf["preload_app"] is False  # each worker opens its own pools after the fork


def test_a_refused_command_shows_the_whole_reason(
    settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in _env(settings).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AGENTHUB_ENV", "bogus")
    assert main(["region", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("agenthub: AGENTHUB_ENV must be one of") and err.rstrip().endswith(
        "'bogus'"
    )
