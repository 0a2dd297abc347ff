"""Inbound benchmark: the hub's producer under load, against a parse-and-validate baseline.

    .venv/bin/python bench/inbound.py            # N=20,000 per run, 10 and 32 concurrent clients
    .venv/bin/python bench/inbound.py --quick    # N=2,000, a smoke run
    .venv/bin/python bench/inbound.py --against /tmp/old   # also the hub of another checkout
    .venv/bin/python bench/inbound.py --without-store      # also the hub minus its store

Three apps run under gunicorn (2 workers × 16 threads, gthread) on loopback: the baseline
(parse + XSD + fixed OK), ``+insert`` (the baseline plus one plain psycopg2 INSERT and commit
per call: what storing at all costs) and the hub, which stores into PostgreSQL (a fresh database
``agenthub_bench``). Valid, distinct messages are spread over three member regions. The apps run
in turns at each concurrency, in several rounds of a share of the messages each, so that a
machine that speeds up or slows down during the run (a shared host) weighs on every app alike;
each row also shows the CPU milliseconds per call spent by the server, by PostgreSQL and by the
load generator. With ``--without-store`` it also prints what a producer would reach that did the
hub's contract work and stored each call as cheaply as +insert (the two extra costs added up).
Target (issue 2): hub throughput ≥ 0.5 × baseline, and hub p99 ≤ 50 ms at 10 concurrent.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg2
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baseline_app import STORE_TABLE
from bench.common import LoadResult, Server, postgres_pid, run_load, tree_cpu_seconds
from hub.config import load_settings
from hub.context import build_hub
from hub.contract.names import ENDPOINT_PATH
from hub.contract.personnummer import generate
from hub.contract.samples import Scenario, sample_information
from hub.contract.serialise import build_request_envelope
from hub.db.migrate import upgrade_hub
from hub.db.region_tables import messages
from hub.tenancy.access import system_actor
from hub.tenancy.registry import MemberRegion, save_region

REGIONS = [
    ("01", "SE2321000016", "Region Stockholm"),
    ("14", "SE2321000131", "VGR"),
    ("12", "SE2321000255", "Region Skåne"),
]
SCENARIOS: tuple[Scenario, ...] = ("move", "sample", "treatment", "no_information")
PG = "postgresql://postgres@127.0.0.1:5432"


def make_bodies(count: int, rng: random.Random, seen: set[str]) -> list[bytes]:
    """``count`` valid, distinct requests spread over the three regions and four scenarios."""
    bodies: list[bytes] = []
    today = date.today()
    while len(bodies) < count:
        pnr = generate(rng)
        if pnr in seen:
            continue
        seen.add(pnr)
        lan = REGIONS[len(bodies) % 3][0]
        info = sample_information(
            SCENARIOS[len(bodies) % 4],
            pnr=pnr,
            sending_lan="05",
            today=today,
        )
        bodies.append(build_request_envelope(lan, info))
    return bodies


def combined_ratio(*ratios: float) -> float:
    """The ratio to the baseline of an app that adds up the extra costs of several others.

    Each app's ratio ``r`` says a call of it costs ``1 / r`` baseline calls, ``1 / r - 1`` more
    than the baseline. On a machine whose CPUs the apps saturate, costs per call add up: an app
    that does the extra work of each costs ``1 + sum(1 / r - 1)`` baseline calls. With +insert's
    ratio and the no-store hub's, that is what the hub would reach if its store cost no more
    than one plain INSERT: what the target asks of any producer that stores before it answers.
    """
    if not ratios or any(r <= 0 for r in ratios):
        raise ValueError("ratios must be positive")
    return 1 / (1 + sum(1 / r - 1 for r in ratios))


def fresh_database(name: str) -> str:
    """Drop and create a PostgreSQL database; return its SQLAlchemy URL."""
    conn = psycopg2.connect(f"{PG}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def other_hub(directory: Path, env: dict[str, str], start: date) -> None:
    """Set up the hub of another checkout on its own database with its own CLI (``--against``).

    Its own ``db upgrade`` and ``region add``, so its schema is the one its code expects.
    """
    cli = [sys.executable, "-c", "import sys; from hub.cli import main; sys.exit(main())"]
    run_env = {**os.environ, **env}
    subprocess.run([*cli, "db", "upgrade"], cwd=directory, env=run_env, check=True)
    day = start.isoformat()
    dates = ["--agreement-signed", day, "--platform-confirmed", day, "--active-from", day]
    for lan, hsa, name in REGIONS:
        subprocess.run(
            [*cli, "region", "add", "--lan", lan, "--hsa-id", hsa, "--name", name, *dates],
            cwd=directory,
            env=run_env,
            check=True,
            stdout=subprocess.DEVNULL,
        )


def _cpu(server: Server, pg_pid: int | None) -> tuple[float, float, float]:
    """CPU seconds so far of the server tree, of PostgreSQL (0 if not local), of this process."""
    return (
        tree_cpu_seconds(server.process.pid),
        tree_cpu_seconds(pg_pid) if pg_pid else 0.0,
        time.process_time(),
    )


def main() -> int:
    """Run the benchmark and print its table; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 32])
    parser.add_argument("--quick", action="store_true", help="n=2000")
    parser.add_argument(
        "--rounds", type=int, default=4, help="turns each app takes at each concurrency"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both apps)")
    parser.add_argument("--threads", type=int, default=16, help="threads per worker")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="DIR",
        help="also serve the hub of another checkout (e.g. a git worktree of main) as hub-B, "
        "on its own database, in the same rounds: an A/B of a change on a noisy machine",
    )
    parser.add_argument(
        "--without-store",
        action="store_true",
        help="also serve the hub with its store taken out (bench/hub_nostore.py): splits the "
        "hub's cost into the contract work and the storing",
    )
    args = parser.parse_args()
    n = 2_000 if args.quick else args.n

    workdir = Path(tempfile.mkdtemp(prefix="agenthub-bench-"))
    url = fresh_database("agenthub_bench")
    env = {
        "AGENTHUB_ENV": "dev",
        "AGENTHUB_DATA_DIR": str(workdir / "data"),
        "AGENTHUB_DATABASE_URL": url,
        "AGENTHUB_LOG_LEVEL": "info",
    }
    settings = load_settings(env)
    hub = build_hub(settings)
    upgrade_hub(hub.db)
    start = date.today() - timedelta(days=30)
    for lan, hsa, name in REGIONS:
        save_region(
            hub.db,
            hub.keys,
            MemberRegion(
                lan, hsa, name, agreement_signed=start, platform_confirmed=start, active_from=start
            ),
            system_actor("bench"),
            create=True,
        )

    rng = random.Random(7)
    seen: set[str] = set()
    print(f"generating {n * len(args.concurrency) + 400} synthetic messages …", flush=True)
    warmup = make_bodies(400, rng, seen)
    runs = {c: make_bodies(n, rng, seen) for c in args.concurrency}

    with psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://")) as conn:
        conn.cursor().execute(STORE_TABLE)

    shape = {"workers": args.workers, "threads": args.threads}
    # The target's yardstick (parse + XSD + fixed OK), a second one that also stores each call
    # with one INSERT and commit (shows what storing at all costs), and the hub.
    servers = {
        "baseline": Server("bench.baseline_app:app", env, log=workdir / "baseline.log", **shape),
        "+insert": Server("bench.baseline_app:store_app", env, log=workdir / "store.log", **shape),
        "hub": Server("hub.wsgi:app", env, log=workdir / "hub.log", **shape),
    }
    if args.without_store:
        servers["no-store"] = Server(
            "bench.hub_nostore:build_app()", env, log=workdir / "nostore.log", **shape
        )
    if args.against:
        env_b = {
            **env,
            "AGENTHUB_DATA_DIR": str(workdir / "data-b"),
            "AGENTHUB_DATABASE_URL": fresh_database("agenthub_bench_b"),
        }
        other_hub(args.against, env_b, start)
        servers["hub-B"] = Server(
            "hub.wsgi:app", env_b, log=workdir / "hub-b.log", cwd=args.against, **shape
        )
    results: dict[tuple[str, int], LoadResult] = {}
    # CPU milliseconds per call: server (gunicorn and its workers), PostgreSQL, load generator.
    cpu: dict[tuple[str, int], tuple[float, float, float]] = {}
    pg_pid = postgres_pid()
    try:
        for server in servers.values():
            run_load(server.port, ENDPOINT_PATH, warmup, 8, b">OK<")
        for concurrency, bodies in runs.items():
            # Each app takes the same share of the messages in turn, round after round.
            rounds = max(1, min(args.rounds, len(bodies)))
            shares = [bodies[i::rounds] for i in range(rounds)]
            for number, share in enumerate(shares, 1):
                for label, server in servers.items():
                    print(
                        f"  {label:<8} {concurrency:>3} concurrent, round {number}/{rounds} …",
                        flush=True,
                    )
                    before = _cpu(server, pg_pid)
                    result = run_load(server.port, ENDPOINT_PATH, share, concurrency, b">OK<")
                    after = _cpu(server, pg_pid)
                    key = (label, concurrency)
                    results[key] = results[key] + result if key in results else result
                    spent = [b - a for a, b in zip(before, after, strict=True)]
                    cpu[key] = tuple(  # type: ignore[assignment]
                        x + y for x, y in zip(cpu.get(key, (0.0, 0.0, 0.0)), spent, strict=True)
                    )
        # CPU seconds in all → milliseconds per call.
        cpu = {
            key: tuple(x / results[key].count * 1000 for x in spent)  # type: ignore[misc]
            for key, spent in cpu.items()
        }
    finally:
        for server in servers.values():
            server.stop()

    stored = 0
    for lan, _, _ in REGIONS:
        with hub.db.region(lan).connect() as connection:
            stored += connection.execute(select(func.count()).select_from(messages)).scalar_one()
    hub.close()

    print()
    print(
        f"inbound benchmark: N={n} per app and concurrency (in {args.rounds} rounds), "
        f"gunicorn {args.workers}×{args.threads} gthread, PostgreSQL, 3 regions"
    )
    print(
        f"{'app':<9}{'conc':>5}{'msgs/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'fail':>6}"
        f"{'peak RSS MB':>13}{'ratio':>8}   CPU ms/call: server  postgres  client"
    )
    ok = True
    for concurrency in args.concurrency:
        base = results[("baseline", concurrency)]
        for label, server in servers.items():
            result = results[(label, concurrency)]
            print(
                f"{label:<9}{concurrency:>5}{result.rate:>10.0f}{result.p50:>9.1f}"
                f"{result.percentile(99):>9.1f}{result.failures:>6}"
                f"{server.peak_rss / 2**20:>13.0f}{result.rate / base.rate:>8.2f}"
                "                %6.2f  %8.2f  %6.2f" % cpu[(label, concurrency)]
            )
            ok &= result.failures == 0
        mine = results[("hub", concurrency)]
        ratio = mine.rate / base.rate
        print(f"  hub vs +insert: {mine.rate / results[('+insert', concurrency)].rate:.2f} ×")
        if args.without_store:
            nostore = results[("no-store", concurrency)].rate / base.rate
            print(
                f"  hub vs no-store (what storing leaves of the contract work's rate): "
                f"{mine.rate / results[('no-store', concurrency)].rate:.2f} ×"
            )
            print(
                "  a producer doing the hub's contract work and storing each call as cheaply as "
                "+insert would reach "
                f"{combined_ratio(results[('+insert', concurrency)].rate / base.rate, nostore):.2f}"
                " × baseline"
            )
        if args.against:
            print(
                f"  hub vs hub-B ({args.against}): "
                f"{mine.rate / results[('hub-B', concurrency)].rate:.2f} ×"
            )
        if concurrency == 10:
            hit = ratio >= 0.5 and mine.percentile(99) <= 50
            print(
                f"  target at 10 concurrent (hub ≥ 0.50 × baseline, p99 ≤ 50 ms): "
                f"{'MET' if hit else 'MISSED'}"
            )
            ok &= hit
    expected = n * len(args.concurrency) + len(warmup)
    print(f"stored messages: {stored} of {expected} sent to the hub")
    ok &= stored == expected
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
