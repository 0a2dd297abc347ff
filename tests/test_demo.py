"""The README's first command: ``agenthub demo`` shows a complete exchange, embedded default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_demo_completes_an_exchange(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_")}
    env["AGENTHUB_DATA_DIR"] = str(tmp_path / "var")
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "demo", "--once", "--port", "0", "--sim-port", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "exchange complete" in result.stdout
    drops = tmp_path / "var" / "drops"
    for lan, count in (("01", 1), ("14", 1)):
        received = sorted((drops / lan / "received").glob("*.xml"))
        assert len(received) == count
        assert "cervixScreeningInformation" in received[0].read_text(encoding="utf-8")
    receipts = [json.loads(p.read_text()) for p in (drops / "14" / "receipts").glob("*.json")]
    assert sorted(r["to_lan"] for r in receipts) == ["01", "12"]
    assert {r["state"] for r in receipts} == {"delivered"}
    # The demo's output shows personnummer masked only.
    from hub.contract.personnummer import mask_text

    assert mask_text(result.stdout + result.stderr) == result.stdout + result.stderr
