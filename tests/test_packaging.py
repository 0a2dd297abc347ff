"""The built wheel stands alone: installed into a fresh venv it migrates, serves and runs the demo.

The wheel is built from this checkout (hatchling, no network), installed without its
dependencies into a new virtual environment whose only other path is this test run's own
site-packages (so the dependencies need not be downloaded again), and run from a folder outside
the checkout: whatever it finds of the contract, the migrations and the demo regions, it finds
inside the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hub.contract.names import ENDPOINT_PATH
from tests.sshd import free_port

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the built wheel installed; returns its bin folder."""
    where = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(where)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    [wheel] = list(where.glob("agenthub-*.whl"))
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    # The dependencies come from this run's environment, appended after the venv's own
    # site-packages; a plain path in a .pth file does not run that folder's own .pth files, so
    # the editable install of the checkout stays invisible.
    purelib = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "_agenthub_test_deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8"
    )
    return venv / "bin"


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_")}
    env.update(
        {
            "AGENTHUB_ENV": "dev",
            "AGENTHUB_DATA_DIR": str(data),
            "AGENTHUB_LOG_LEVEL": "warning",
            "PYTHONPATH": "",
        }
    )
    return env


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working folder with no ``regions/``, ``wsdl/`` or ``migrations/`` beside it."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One ``agenthub`` command of the installed wheel."""
    return subprocess.run(
        [str(bin_dir / "agenthub"), *args],
        cwd=cwd,
        env=_env(cwd / "data"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_comes_from_the_wheel_not_the_checkout(installed: Path, outside: Path) -> None:
    found = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import hub, hub.shipped as s; "
            "print(hub.__file__); print(s.shipped_dir('wsdl')); print(s.shipped_dir('migrations'))",
        ],
        cwd=outside,
        env=_env(outside / "data"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    venv = installed.parent.resolve()
    assert all(Path(line).resolve().is_relative_to(venv) for line in found), found
    assert not any(Path(line).resolve().is_relative_to(REPO) for line in found), found


@pytest.fixture
def serving(installed: Path, outside: Path) -> Iterator[str]:
    """``agenthub serve`` of the wheel on a free port, with region 14 registered."""
    assert run(installed, outside, "db", "upgrade").returncode == 0
    added = run(
        installed,
        outside,
        "region",
        "add",
        "--lan",
        "14",
        "--hsa-id",
        "SE2321000131",
        "--name",
        "Västra Götalandsregionen",
        "--agreement-signed",
        "2026-01-15",
        "--platform-confirmed",
        "2026-02-01",
    )
    assert added.returncode == 0, added.stderr
    port = free_port()
    log = (outside / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(installed / "agenthub"), "serve", "--port", str(port)],
        cwd=outside,
        env=_env(outside / "data"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            pytest.fail("the wheel's agenthub serve did not come up")
        yield url
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def test_the_wheel_migrates_serves_its_wsdl_and_stores_an_inbound_call(
    installed: Path, outside: Path, serving: str
) -> None:
    wsdl = requests.get(f"{serving}{ENDPOINT_PATH}?wsdl", timeout=5)
    assert wsdl.status_code == 200 and b"ProcessCervixScreeningInformation" in wsdl.content
    sample = run(installed, outside, "sample", "--lan", "14", "--seed", "5")
    assert sample.returncode == 0
    answer = requests.post(
        f"{serving}{ENDPOINT_PATH}",
        data=sample.stdout.encode(),
        headers={"Content-Type": "text/xml; charset=utf-8"},
        timeout=10,
    )
    assert answer.status_code == 200 and b">OK<" in answer.content, answer.content
    listed = run(installed, outside, "messages", "--lan", "14")
    assert listed.returncode == 0 and listed.stdout.count("\n") == 2, listed.stdout  # header + 1


def test_the_wheel_runs_the_demo_on_its_shipped_regions(installed: Path, outside: Path) -> None:
    port, sim_port = free_port(), free_port()
    demo = run(
        installed, outside, "demo", "--once", "--port", str(port), "--sim-port", str(sim_port)
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "exchange complete" in demo.stdout


def test_the_wheel_carries_the_workspace_templates_styles_and_swedish(serving: str) -> None:
    page = requests.get(f"{serving}/logga-in", timeout=5)
    assert page.status_code == 200 and '<html lang="sv">' in page.text
    assert "<h1>Logga in</h1>" in page.text  # the compiled Swedish catalogue is in the wheel
    css = requests.get(f"{serving}/static/hub.css", timeout=5)
    assert css.status_code == 200 and "--primary" in css.text
