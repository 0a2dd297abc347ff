"""Outbound benchmark: the senders against the NTjP simulator's instant mock producer.

    .venv/bin/python bench/outbound.py            # 20,000 records to 20 destinations
    .venv/bin/python bench/outbound.py --quick    # 2,000 records, a smoke run
    .venv/bin/python bench/outbound.py --db sqlite

Two member regions (14, 01) queue N distinct, valid records (move/sample/treatment, synthetic
personnummer) spread evenly over 20 destination län codes; the simulator runs in its own process
and routes all 20 to its in-process ``mock:`` producer. Then, in one run:

(a) caps on (10 calls/s per destination, the default): each destination's measured call rate
    (attempt start times from the region logs) must lie within 5 % of 10/s;
(b) caps off: the senders' throughput (records to a final state per second, database work
    included) against a bare loop that posts the very same envelopes one after another with
    ``requests`` to the same simulator (target: ratio >= 0.5);
(c) 1 % injected faults (``mock:?fault_rate=0.005&error_rate=0.005``: half technical faults,
    resent; half ERROR answers, refused): every record's final state and number of attempts
    must equal what an independent replay of the mock's deterministic draws predicts; then
    every record's receipt is written.

Enqueueing (validation, zeep, sealing) is setup and timed separately. Records are reset to
``queued`` between phases, so every phase sends the same N envelopes.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import requests
from sqlalchemy import delete, select, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port
from hub.clock import swedish_today
from hub.config import load_settings
from hub.context import Hub, build_hub
from hub.contract.names import ENDPOINT_PATH, HDR_CORRELATION_ID
from hub.contract.personnummer import generate
from hub.contract.samples import Scenario, sample_information
from hub.contract.xmlsafe import parse_untrusted
from hub.db.hub_tables import operator_audit
from hub.db.migrate import upgrade_hub
from hub.db.region_tables import outbox, outbox_attempts
from hub.drops.state import Backoff
from hub.outbound.client import soap_action
from hub.outbound.enqueue import Approval, enqueue_many
from hub.outbound.receipts import write_receipts
from hub.outbound.sender import Dispatcher
from hub.outbound.settings import (
    DEV_AGENT_HSAID,
    DEV_CONSUMER_HEADER,
    ConsumerSettings,
    DestinationPolicy,
)
from hub.outbound.states import QUEUED
from hub.sim.config import LAN_CODES
from hub.sim.mock import MockProducer, parse_mock_url
from hub.tenancy.access import Permission, region_scope, system_actor
from hub.tenancy.registry import MemberRegion, save_region

BENCH = system_actor("bench")

MEMBERS = [
    ("14", "SE2321000131", "Västra Götalandsregionen"),
    ("01", "SE2321000016", "Region Stockholm"),
]
DESTINATIONS = [c for c in LAN_CODES if c != "25"]  # 20 destinations
SCENARIOS: tuple[Scenario, ...] = ("move", "sample", "treatment")
PG = "postgresql://postgres@127.0.0.1:5432"
FAULTS = "mock:?fault_rate=0.005&error_rate=0.005&seed=outbound"
REPO = Path(__file__).resolve().parent.parent


class Sim:
    """The simulator in its own process, every destination routed to ``mock_url``.

    ``server`` "gunicorn" (default): one process, 32 threads, keep-alive (see bench/sim_wsgi.py);
    "werkzeug": ``agenthub ntjp-sim`` as a region would run it.
    """

    def __init__(self, folder: Path, mock_url: str, server: str = "gunicorn") -> None:
        self.port = free_port()
        config = folder / f"routes-{self.port}.toml"
        lines = ['[sim]\ninstance_id = "BENCH SIM"\nload_mocks = false\n']
        lines += [
            f'[[routes]]\nlogical_address = "{d}"\nurl = "{mock_url}"\n' for d in DESTINATIONS
        ]
        lines.append('[[authorisations]]\nconsumer_hsaid = "*"\nlogical_address = "SE"\n')
        config.write_text("\n".join(lines))
        if server == "gunicorn":
            command = [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                "1",
                "-k",
                "gthread",
                "--threads",
                "32",
                "--keep-alive",
                "30",
                "-b",
                f"127.0.0.1:{self.port}",
                "bench.sim_wsgi:app",
            ]
        else:
            command = [
                sys.executable,
                "-m",
                "hub.cli",
                "ntjp-sim",
                "--port",
                str(self.port),
                "--config",
                str(config),
            ]
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "AGENTHUB_LOG_LEVEL": "warning", "AGENTHUB_SIM_CONFIG": str(config)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the simulator did not start")

    @property
    def url(self) -> str:
        """The contract's endpoint on the simulator."""
        return f"http://127.0.0.1:{self.port}{ENDPOINT_PATH}"

    def stop(self) -> None:
        """Stop the simulator process."""
        self.process.terminate()
        self.process.wait(10)


def fresh_database(kind: str, folder: Path) -> str:
    """An empty database for the run."""
    if kind == "sqlite":
        return f"sqlite:///{folder / 'data' / 'hub.db'}"
    conn = psycopg2.connect(f"{PG}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute('DROP DATABASE IF EXISTS "agenthub_bench_out" WITH (FORCE)')
        cur.execute('CREATE DATABASE "agenthub_bench_out"')
    conn.close()
    return "postgresql+psycopg2://postgres@127.0.0.1:5432/agenthub_bench_out"


def setup(kind: str, folder: Path) -> Hub:
    """A hub with the two member regions."""
    settings = load_settings(
        {
            "AGENTHUB_ENV": "test",
            "AGENTHUB_DATA_DIR": str(folder / "data"),
            "AGENTHUB_DATABASE_URL": fresh_database(kind, folder),
            "AGENTHUB_LOG_LEVEL": "warning",
        }
    )
    hub = build_hub(settings)
    upgrade_hub(hub.db)
    start = date.today() - timedelta(days=30)
    for lan, hsa, name in MEMBERS:
        region = MemberRegion(
            lan,
            hsa,
            name,
            drop_url=str(folder / "drops" / lan),
            agreement_signed=start,
            platform_confirmed=start,
            active_from=start,
        )
        save_region(hub.db, hub.keys, region, BENCH, create=False)
    return hub


def queue_records(hub: Hub, n: int) -> float:
    """Queue n records spread over the destinations; return seconds taken."""
    rng = random.Random(20261122)
    today = swedish_today()
    seen: set[str] = set()
    batches: dict[str, list[Approval]] = defaultdict(list)
    for i in range(n):
        dest = DESTINATIONS[i % len(DESTINATIONS)]
        lan = MEMBERS[(i // len(DESTINATIONS)) % 2][0]
        if lan == dest:
            lan = MEMBERS[0][0] if lan == MEMBERS[1][0] else MEMBERS[1][0]
        pnr = generate(rng)
        while pnr in seen:  # distinct women, so no record is a duplicate of another
            pnr = generate(rng)
        seen.add(pnr)
        info = sample_information(SCENARIOS[i % 3], pnr=pnr, sending_lan=lan, today=today)
        batches[lan].append(Approval(dest, info, f"bench:{i}"))
    started = time.perf_counter()
    for lan, approvals in batches.items():
        for chunk in range(0, len(approvals), 1000):
            scope = region_scope(hub, BENCH, lan, Permission.DECIDE)
            answers = enqueue_many(scope, approvals[chunk : chunk + 1000])
            bad = [a for a in answers if isinstance(a, Exception)]
            assert not bad, bad[:3]
    return time.perf_counter() - started


def reset(hub: Hub) -> None:
    """Every record back to queued, attempts and alerts forgotten (between phases)."""
    now = datetime.now(UTC)
    for lan, _, _ in MEMBERS:
        with hub.db.region(lan).begin() as connection:
            connection.execute(delete(outbox_attempts))
            connection.execute(
                update(outbox).values(
                    state=QUEUED,
                    attempts=0,
                    next_attempt_at=now,
                    claimed_by=None,
                    claimed_until=None,
                    result_code=None,
                    result_text=None,
                    fault_code=None,
                    last_error=None,
                    final_at=None,
                    receipt_name=None,
                    receipt_at=None,
                )
            )
    with hub.db.hub.begin() as connection:
        from hub.db.hub_tables import alerts

        connection.execute(delete(alerts))
        connection.execute(delete(operator_audit).where(operator_audit.c.action.like("alert%")))


def settings_for(url: str, **policy: Any) -> ConsumerSettings:
    """Consumer settings for the simulator (dev identity header, our agent HSA-id)."""
    return ConsumerSettings(ntjp_url=url, default_policy=DestinationPolicy(**policy))


def run(hub: Hub, settings: ConsumerSettings, timeout: float) -> tuple[float, Any]:
    """Send until every record is final; (seconds, stats). Receipts are not part of the time."""
    dispatcher = Dispatcher(hub, settings)
    try:
        started = time.perf_counter()
        stats = dispatcher.drain(timeout, receipts=False)
        return time.perf_counter() - started, stats
    finally:
        dispatcher.close()


def attempts_by_destination(hub: Hub) -> dict[str, list[datetime]]:
    """Start times of every call, per destination, from both regions' logs."""
    found: dict[str, list[datetime]] = defaultdict(list)
    for lan, _, _ in MEMBERS:
        with hub.db.region(lan).connect() as connection:
            rows = connection.execute(
                select(outbox.c.to_lan, outbox_attempts.c.started_at).join(
                    outbox_attempts, outbox_attempts.c.outbox_id == outbox.c.id
                )
            )
            for to_lan, started in rows:
                found[to_lan].append(started if started.tzinfo else started.replace(tzinfo=UTC))
    return {k: sorted(v) for k, v in found.items()}


def envelopes(hub: Hub) -> list[tuple[str, str, bytes, str]]:
    """(region, record id, request envelope, correlation id) of every record."""
    out = []
    for lan, _, _ in MEMBERS:
        with hub.db.hub.connect() as connection:
            cipher = hub.keys.cipher(connection, lan)
        with hub.db.region(lan).connect() as connection:
            for row in connection.execute(
                select(outbox.c.id, outbox.c.request_enc, outbox.c.correlation_id)
            ):
                out.append(
                    (
                        lan,
                        row.id,
                        cipher.open(row.request_enc, "outbox-request"),
                        row.correlation_id,
                    )
                )
    return out


def bare_loop(url: str, bodies: list[tuple[str, str, bytes, str]]) -> float:
    """POST every envelope once, one after another, with requests; return seconds."""
    session = requests.Session()
    session.trust_env = False
    headers = {
        "Content-Type": "text/xml; charset=UTF-8",
        "SOAPAction": f'"{soap_action()}"',
        DEV_CONSUMER_HEADER: DEV_AGENT_HSAID,
    }
    started = time.perf_counter()
    for _, _, body, correlation in bodies:
        answer = session.post(
            url, data=body, headers={**headers, HDR_CORRELATION_ID: correlation}, timeout=30
        )
        if answer.status_code != 200 or b"<" not in answer.content:
            raise RuntimeError(f"bare loop: HTTP {answer.status_code}")
    seconds = time.perf_counter() - started
    session.close()
    return seconds


def expected_outcome(
    body: bytes, mock: MockProducer, options: Any, max_attempts: int
) -> tuple[str, int]:
    """What the mock's deterministic draws make of one record under our resend policy."""
    envelope = parse_untrusted(body, 5 * 1024 * 1024)
    for attempt in range(1, max_attempts + 1):
        reply = mock.answer(body, envelope, options)
        if reply.status == 500:
            continue  # a technical fault: resent
        return ("refused" if b">ERROR<" in reply.body else "delivered"), attempt
    return "failed", max_attempts


def final_states(hub: Hub) -> dict[str, tuple[str, int]]:
    """record id → (state, attempts)."""
    out = {}
    for lan, _, _ in MEMBERS:
        with hub.db.region(lan).connect() as connection:
            for row in connection.execute(select(outbox.c.id, outbox.c.state, outbox.c.attempts)):
                out[row.id] = (row.state, row.attempts)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 records")
    parser.add_argument("--records", type=int, help="number of records (default 20,000)")
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--sim-server",
        choices=["gunicorn", "werkzeug"],
        default="gunicorn",
        help="how the simulator is served (werkzeug = agenthub ntjp-sim)",
    )
    args = parser.parse_args()
    n = args.records or (2_000 if args.quick else 20_000)
    rows: list[tuple[str, str, str]] = []
    verdicts: list[bool] = []
    with tempfile.TemporaryDirectory(prefix="agenthub-bench-out-") as tmp:
        folder = Path(tmp)
        hub = setup(args.db, folder)
        seconds = queue_records(hub, n)
        rows.append(
            (
                "setup",
                f"queue {n:,} records (validate, zeep, seal; enqueue_many)",
                f"{seconds:.1f} s = {n / seconds:,.0f}/s",
            )
        )
        bodies = envelopes(hub)

        sim = Sim(folder, "mock:", args.sim_server)
        try:
            # (a) caps on.
            capped = settings_for(sim.url, rate_per_s=10, pause_ms=50, max_attempts=5)
            seconds, stats = run(hub, capped, timeout=n / 10 / len(DESTINATIONS) * 3 + 60)
            rates = {}
            for dest, starts in attempts_by_destination(hub).items():
                span = (starts[-1] - starts[0]).total_seconds()
                rates[dest] = (len(starts) - 1) / span if span > 0 else float("inf")
            worst = max(abs(r - 10) / 10 for r in rates.values())
            ok_a = stats.delivered == n and worst <= 0.05
            verdicts.append(ok_a)
            rows.append(
                (
                    "(a) cap 10/s",
                    f"{len(rates)} destinations x {n // len(DESTINATIONS):,} calls "
                    f"in {seconds:.1f} s; rate min {min(rates.values()):.2f}, "
                    f"max {max(rates.values()):.2f}/s",
                    f"worst {worst:.1%} off  {'PASS' if ok_a else 'FAIL'} (<= 5%)",
                )
            )

            # (b) caps off, against a bare requests loop over the same envelopes.
            bare = bare_loop(sim.url, bodies)
            reset(hub)
            uncapped = settings_for(sim.url, rate_per_s=0, pause_ms=50, max_attempts=5)
            seconds, stats = run(hub, uncapped, timeout=600)
            ratio = (n / seconds) / (n / bare)
            ok_b = stats.delivered == n and ratio >= 0.5
            verdicts.append(ok_b)
            rows.append(
                ("(b) bare loop", f"requests.post x {n:,}, one after another", f"{n / bare:,.0f}/s")
            )
            rows.append(
                (
                    "(b) caps off",
                    f"senders, {stats.calls:,} calls, all delivered: {stats.delivered == n}",
                    f"{n / seconds:,.0f}/s = {ratio:.2f} x bare  "
                    f"{'PASS' if ok_b else 'FAIL'} (>= 0.5)",
                )
            )
        finally:
            sim.stop()

        # (c) 1 % injected faults, against a fresh simulator (its mock counts attempts).
        sim = Sim(folder, FAULTS, args.sim_server)
        try:
            reset(hub)
            max_attempts = 4
            faulty = settings_for(
                sim.url, rate_per_s=0, pause_ms=20, backoff=2.0, max_attempts=max_attempts
            )
            seconds, stats = run(hub, faulty, timeout=600)
        finally:
            sim.stop()
        mock, options = MockProducer(0.0), parse_mock_url(FAULTS)
        expected = {
            rid: expected_outcome(body, mock, options, max_attempts) for _, rid, body, _ in bodies
        }
        actual = final_states(hub)
        wrong = sum(1 for rid, outcome in expected.items() if actual.get(rid) != outcome)
        counts: dict[str, int] = defaultdict(int)
        for state, _ in actual.values():
            counts[state] += 1
        ok_c = wrong == 0 and len(actual) == n
        verdicts.append(ok_c)
        injected = stats.by_code.get("FAULT", 0) + stats.refused
        rows.append(
            (
                "(c) 1% faults",
                f"{stats.calls:,} calls ({injected} injected faults) in {seconds:.1f} s; "
                + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())),
                f"{wrong} wrong final state/attempts  {'PASS' if ok_c else 'FAIL'}",
            )
        )
        started = time.perf_counter()
        written = write_receipts(hub, Backoff())
        while written < n:
            more = write_receipts(hub, Backoff())
            if not more:
                break
            written += more
        rows.append(
            (
                "(c) receipts",
                f"{written:,} receipt files written",
                f"{time.perf_counter() - started:.1f} s",
            )
        )
        hub.close()

    width = max(len(r[1]) for r in rows)
    print(
        f"\noutbound benchmark: {n:,} records, {len(DESTINATIONS)} destinations, db={args.db}, "
        f"simulator on {args.sim_server}, "
        f"{os.cpu_count()} CPUs\n"
    )
    for phase, what, result in rows:
        print(f"{phase:<14} {what:<{width}}  {result}")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
