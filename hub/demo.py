"""``agenthub demo``: a complete exchange on one machine, within a minute.

It starts, on loopback: the hub's web process (the SOAP producer), the NTjP simulator, and the
worker (a separate process, as in production). The demo regions from ``regions/`` (Stockholm 01
and Västra Götaland 14) are members; Skåne (12) is reached only through the simulator, where a
mock producer answers for it. Then each member region approves one record for another region:

- 14 → 01: a woman moved from Västra Götaland to Stockholm (her invitation-relevant information);
- 01 → 14: a sample was taken in Stockholm from a woman whose home region is Västra Götaland;
- 14 → 12: treatment in Västra Götaland of a woman living in Skåne.

The records go out through the outbox and the simulator; 01 and 14 receive theirs through our
own producer and get them in their drop's ``received/``; every sender gets a receipt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from werkzeug.serving import make_server

from hub.clock import swedish_today
from hub.config import Settings
from hub.context import Hub, build_hub
from hub.contract.names import ENDPOINT_PATH
from hub.contract.personnummer import generate, mask
from hub.contract.samples import sample_information
from hub.db.migrate import upgrade_all, upgrade_hub
from hub.outbound.enqueue import enqueue
from hub.outbound.settings import load_consumer_settings
from hub.outbound.views import list_outbox
from hub.shipped import shipped_dir
from hub.sim.config import default_sim_config
from hub.sim.server import serve_sim_in_thread
from hub.tenancy.access import Permission, region_scope, system_actor
from hub.tenancy.registry import sync_regions
from hub.web.app import create_app

# (sending region, home region, scenario, what it means)
EXCHANGES = (
    ("14", "01", "move", "moved from Västra Götaland to Stockholm"),
    ("01", "14", "sample", "sample taken in Stockholm, home region Västra Götaland"),
    ("14", "12", "treatment", "treated in Västra Götaland, lives in Skåne (via the simulator)"),
)
FINAL = ("delivered", "refused", "failed")


def regions_folder() -> Path:
    """The demo region files: ``./regions`` if present, else the ``regions/`` shipped with it."""
    here = Path.cwd() / "regions"
    return here if here.is_dir() else shipped_dir("regions")


@contextlib.contextmanager
def _serve(app: object, port: int, name: str) -> Iterator[int]:
    server = make_server("127.0.0.1", port, app, threaded=True)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (Path(env["AGENTHUB_DATA_DIR"]) / "worker.log").open("ab") as log:
        # The child keeps its own copy of the file; the parent's closes here.
        return subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _stop(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        worker.kill()


def _files(root: Path, folder: str) -> list[str]:
    path = root / folder
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if not p.name.startswith("."))


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(settings: Settings, *, port: int, sim_port: int, once: bool, timeout: float) -> int:
    """Run the demo; with ``once`` stop after the exchange (0 if every record was delivered)."""
    # SIGTERM ends the demo like Ctrl-C, so the worker it started is stopped too.
    signal.signal(signal.SIGTERM, _interrupt)
    hub: Hub = build_hub(settings)
    if "AGENTHUB_LOG_LEVEL" not in os.environ:
        # The demo prints its own story; request logs of three servers would bury it.
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    upgrade_hub(hub.db)
    print(f"data folder: {settings.data_dir}")
    demo = system_actor("demo", "cli")
    for lan, what in sorted(sync_regions(hub.db, hub.keys, regions_folder(), demo).items()):
        print(f"  region {lan}: {what}")
    upgrade_all(hub.db)
    hub.router.invalidate()

    consumer = load_consumer_settings()
    with contextlib.ExitStack() as stack:
        hub_port = stack.enter_context(_serve(create_app(hub), port, "hub-web"))
        hub_url = f"http://127.0.0.1:{hub_port}{ENDPOINT_PATH}"
        sim = stack.enter_context(
            serve_sim_in_thread(
                default_sim_config(
                    hub_url=hub_url,
                    hub_lan_codes=("01", "14"),
                    consumer_hsaids=(consumer.agent_hsaid,),
                ),
                port=sim_port,
            )
        )
        env = {
            **os.environ,
            "AGENTHUB_ENV": settings.env,
            "AGENTHUB_DATA_DIR": str(settings.data_dir),
            "AGENTHUB_DATABASE_URL": settings.database_url,
            "AGENTHUB_NTJP_URL": sim.url,
            "AGENTHUB_WORKER_DELIVER_MS": os.environ.get("AGENTHUB_WORKER_DELIVER_MS", "500"),
            "AGENTHUB_SEND_POLL_MS": os.environ.get("AGENTHUB_SEND_POLL_MS", "200"),
            "AGENTHUB_SEND_PAUSE_MS": os.environ.get("AGENTHUB_SEND_PAUSE_MS", "1000"),
        }
        worker = _worker(env)
        stack.callback(_stop, worker)
        print(f"hub (SOAP producer): {hub_url}?wsdl")
        print(f"NTjP simulator:      {sim.url}  (routes 01, 14 to the hub; others to a mock)")
        print(f"worker:              pid {worker.pid}, log {settings.data_dir / 'worker.log'}")
        print()

        rng = random.Random()  # noqa: S311 - synthetic test people, not secrets
        reviewer = system_actor("demo:reviewer", "cli")
        today = swedish_today()
        queued: list[tuple[str, str, str]] = []
        for sender, home, scenario, meaning in EXCHANGES:
            pnr = generate(rng, born=today - timedelta(days=365 * rng.randint(30, 60)))
            info = sample_information(scenario, pnr=pnr, sending_lan=sender, today=today)  # type: ignore[arg-type]
            scope = region_scope(hub, reviewer, sender, Permission.DECIDE)
            record = enqueue(scope, home, info)
            queued.append((sender, record.record_id, home))
            print(f"approved in {sender} for {home}: {scenario:<9} {mask(pnr)}  ({meaning})")

        print("\nwaiting for the worker to send them through the simulator …")
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {}
            for sender, record_id, _ in queued:
                for view in list_outbox(region_scope(hub, demo, sender, Permission.READ_METADATA)):
                    if view.id == record_id:
                        states[record_id] = view.state
            drops = [settings.data_dir / "drops" / lan for lan in ("01", "14")]
            received = sum(len(_files(root, "received")) for root in drops)
            receipts = sum(len(_files(root, "receipts")) for root in drops)
            if (
                all(states.get(r) in FINAL for _, r, _ in queued)
                and received >= 2
                and receipts >= len(queued)
            ):
                break
            if worker.poll() is not None:
                print("the worker stopped; see its log", file=sys.stderr)
                break
            time.sleep(0.5)

        print()
        for sender, record_id, home in queued:
            print(f"  {sender} → {home}: {states.get(record_id, 'unknown')}")
        for lan in ("01", "14"):
            root = settings.data_dir / "drops" / lan
            print(f"\nregion {lan} drop {root}")
            for folder in ("received", "receipts"):
                for name in _files(root, folder):
                    print(f"  {folder}/{name}")
        ok = all(states.get(r) == "delivered" for _, r, _ in queued)
        print(
            f"\nexchange {'complete' if ok else 'NOT complete'}: "
            f"`agenthub messages --lan 01` lists what Stockholm received."
        )
        if once:
            hub.close()
            return 0 if ok else 1
        print(
            "\nstill serving; post more with `agenthub sample --lan 14 | curl --data-binary "
            f"@- {hub_url}`. Ctrl-C to stop."
        )
        try:
            while worker.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping")
    hub.close()
    return 0
