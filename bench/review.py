"""Review benchmark: one filtered page of 50 from a review queue of 1,000 and of 100,000 records.

    .venv/bin/python bench/review.py            # PostgreSQL and SQLite, 1,000 and 100,000
    .venv/bin/python bench/review.py --quick    # 1,000 and 10,000, fewer repetitions
    .venv/bin/python bench/review.py --db sqlite

Two member regions' queues are seeded in bulk, one with 1,000 and one with 100,000 pending
records, straight into the region stores (the intake is bench/intake.py's): rows shaped like
real ones, made from records the intake's own code checked and sealed (``prepare``), each with
its own synthetic personnummer sealed with the region's key, its content sealed anew, 20
destinations, the four scenarios, 1 % flagged, taken in one second apart in intakes of 10,000.
PostgreSQL then gets an ANALYZE, as autovacuum gives a table after a bulk load.

Then the same pages are asked of both queues through ``hub.review.queue.list_queue`` (the
service a web page or the API calls: the query, masking every personnummer, the access-log
line), each many times, and the median compared:

- the target: the first page of one destination's records, and a page from the middle of them;
- for the record: flagged records only, one destination and one scenario, and every waiting
  record (no filter).

Target: the page at 100,000 costs at most 2 x the page at 1,000. Exits 1 when missed.
Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust): the database agenthub_bench_review
is created and dropped.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy import select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.clock import swedish_today
from hub.config import load_settings
from hub.context import Hub, build_hub
from hub.contract.personnummer import generate
from hub.contract.samples import Scenario, sample_information
from hub.db.migrate import upgrade_hub
from hub.db.region_tables import intakes, review_records
from hub.review.queue import (
    PAGE_SIZE,
    QueueFilter,
    _conditions,
    _page_query,
    _position,
    list_queue,
    queue_position,
)
from hub.review.records import Submission, prepare
from hub.sim.config import LAN_CODES
from hub.tenancy.access import Actor, Permission, RegionScope, Role, region_scope, system_actor
from hub.tenancy.registry import MemberRegion, save_region

BENCH = system_actor("bench")
SMALL = ("14", "SE2321000131", "Västra Götalandsregionen")
LARGE = ("01", "SE2321000016", "Region Stockholm")
KINDS: tuple[Scenario, ...] = ("move", "sample", "treatment", "no_information")
PG = "postgresql://postgres@127.0.0.1:5432"
DATABASE = "agenthub_bench_review"
#: Records per seeded intake (an extract file's worth).
PER_INTAKE = 10_000
#: Rows per INSERT statement while seeding.
CHUNK = 5_000
#: The destination the filtered pages ask for.
DESTINATION = "12"


def destinations(lan: str) -> list[str]:
    """The 20 destinations of a region's records (every län but its own and one)."""
    return [c for c in LAN_CODES if c != lan][:20]


def reviewer(lan: str) -> Actor:
    """The person paging through the queue."""
    return Actor(
        kind="user",
        label=f"user:bench-reviewer-{lan}",
        name=f"Bench reviewer {lan}",
        hsa_id=f"SE2321000131-B{lan}",
        roles={lan: frozenset({Role.REVIEWER})},
        auth_method="bench",
    )


def fresh_database(kind: str, folder: Path) -> str:
    """An empty database for the run."""
    if kind == "sqlite":
        return f"sqlite:///{folder / 'data' / 'hub.db'}"
    conn = psycopg2.connect(f"{PG}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{DATABASE}"')
    conn.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DATABASE}"


def drop_database() -> None:
    """Drop the run's PostgreSQL database."""
    conn = psycopg2.connect(f"{PG}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    conn.close()


def setup(database_url: str, folder: Path) -> Hub:
    """A hub with the two member regions."""
    settings = load_settings(
        {
            "AGENTHUB_ENV": "test",
            "AGENTHUB_DATA_DIR": str(folder / "data"),
            "AGENTHUB_DATABASE_URL": database_url,
            "AGENTHUB_LOG_LEVEL": "warning",
        }
    )
    hub = build_hub(settings)
    upgrade_hub(hub.db)
    start = date.today() - timedelta(days=30)
    for lan, hsa, name in (SMALL, LARGE):
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


@dataclass(frozen=True)
class Template:
    """A record the intake's code checked and sealed: what seeded rows are made from."""

    row: dict[str, Any]
    xml: bytes
    pnr: str


def templates(scope: RegionScope, rng: random.Random) -> dict[str, Template]:
    """One checked, sealed record per scenario."""
    today = swedish_today()
    made: dict[str, Template] = {}
    for kind in KINDS:
        pnr = generate(rng)
        info = sample_information(kind, pnr=pnr, sending_lan=scope.lan, today=today)
        prepared = prepare(scope, Submission(DESTINATION, info), today)
        xml = scope.cipher.open(prepared.row["content_enc"], "review-content")
        made[kind] = Template(prepared.row, xml, pnr)
    return made


def seed(hub: Hub, lan: str, n: int, rng: random.Random) -> float:
    """Seed region ``lan``'s queue with ``n`` pending records; return the seconds taken."""
    started = time.perf_counter()
    scope = region_scope(hub, BENCH, lan, Permission.SUBMIT)
    cipher = scope.cipher
    made = templates(scope, rng)
    dests = destinations(lan)
    base = datetime.now(UTC) - timedelta(seconds=n + 60)
    engine = hub.db.region(lan)
    intake_ids = [str(uuid.uuid4()) for _ in range(0, n, PER_INTAKE)]
    with engine.begin() as connection:
        connection.execute(
            intakes.insert(),
            [
                {
                    "id": intake_id,
                    "created_at": base + timedelta(seconds=number * PER_INTAKE - 1),
                    "updated_at": base,
                    "source": "drop",
                    "actor": "worker:bench",
                    "original_name": f"extract-{number}.csv",
                    "format": "csv",
                    "sha256": hashlib.sha256(intake_id.encode()).hexdigest(),
                    "size": PER_INTAKE * 400,
                    "chunks": 1,
                    "state": "done",
                    "finished_at": base + timedelta(seconds=(number + 1) * PER_INTAKE),
                }
                for number, intake_id in enumerate(intake_ids)
            ],
        )
    for start in range(0, n, CHUNK):
        rows = []
        for i in range(start, min(start + CHUNK, n)):
            kind = KINDS[i % len(KINDS)]
            template = made[kind]
            pnr = generate(rng)
            xml = template.xml.replace(template.pnr.encode(), pnr.encode())
            to_lan = dests[rng.randrange(len(dests))]
            protected = rng.random() < 0.01
            at = base + timedelta(seconds=i)
            rows.append(
                {
                    **template.row,
                    "id": str(uuid.uuid4()),
                    "created_at": at,
                    "updated_at": at,
                    "intake_id": intake_ids[i // PER_INTAKE],
                    "line": i % PER_INTAKE + 2,
                    "reference": f"extract-{i // PER_INTAKE}.csv:{i % PER_INTAKE + 2}",
                    "to_lan": to_lan,
                    "protected_identity": protected,
                    "flagged": protected,
                    # Not the canonical hash (that needs a parse per row): the same shape.
                    "content_sha256": hashlib.sha256(xml).hexdigest(),
                    "content_key": cipher.keyed_hash(to_lan.encode() + b"\0" + xml),
                    "pnr_hash": cipher.keyed_hash(pnr),
                    "pnr_enc": cipher.seal(pnr.encode(), "pnr"),
                    "content_enc": cipher.seal(xml, "review-content"),
                }
            )
        with engine.begin() as connection:
            connection.execute(review_records.insert(), rows)
    if not hub.db.is_sqlite:
        with engine.begin() as connection:
            connection.execute(text(f"ANALYZE region_{lan}.review_records"))
    return time.perf_counter() - started


def middle_of(hub: Hub, lan: str, to_lan: str) -> str:
    """The queue position halfway through one destination's records."""
    with hub.db.region(lan).connect() as connection:
        rows = connection.execute(
            select(review_records.c.created_at, review_records.c.id)
            .where(review_records.c.to_lan == to_lan)
            .order_by(review_records.c.created_at, review_records.c.id)
        ).all()
    at, record_id = rows[len(rows) // 2]
    return queue_position(at, record_id)


def latest_intake(hub: Hub, lan: str) -> str:
    """The id of the region's newest intake (the end of its queue)."""
    with hub.db.region(lan).connect() as connection:
        return str(
            connection.execute(
                select(intakes.c.id).order_by(intakes.c.created_at.desc()).limit(1)
            ).scalar_one()
        )


def first_page(_hub: Hub, _lan: str) -> str | None:
    """No position: the first page."""
    return None


def fixed(query: QueueFilter) -> Callable[[Hub, str], QueueFilter]:
    """The same filter for both regions."""
    return lambda _hub, _lan: query


@dataclass(frozen=True)
class Case:
    """One page asked of both queues."""

    name: str
    query: Callable[[Hub, str], QueueFilter]
    #: The position to start after, per region (None: the first page).
    after: Callable[[Hub, str], str | None]
    #: Whether the target holds this page to 2 x.
    target: bool


BY_DESTINATION = QueueFilter(to_lan=DESTINATION)
CASES = [
    Case("destination, first page", fixed(BY_DESTINATION), first_page, True),
    Case(
        "destination, middle page",
        fixed(BY_DESTINATION),
        lambda hub, lan: middle_of(hub, lan, DESTINATION),
        True,
    ),
    Case("flagged only", fixed(QueueFilter(flagged=True)), first_page, False),
    Case(
        "destination and scenario",
        fixed(QueueFilter(to_lan=DESTINATION, kind="move")),
        first_page,
        False,
    ),
    Case(
        "the newest extract's records",
        lambda hub, lan: QueueFilter(intake_id=latest_intake(hub, lan)),
        first_page,
        False,
    ),
    Case("every waiting record", fixed(QueueFilter()), first_page, False),
]


def timed_turns(calls: list[Callable[[], int]], repeats: int) -> list[tuple[float, int]]:
    """Median seconds of each call, and the records its last run returned.

    The calls take turns, one by one, so a busy moment of a shared machine falls on all.
    """
    sizes = [0] * len(calls)
    for call in calls:
        for _ in range(3):  # warm: pool, cipher, statement caches
            call()
    times: list[list[float]] = [[] for _ in calls]
    for turn in range(repeats):
        order = range(len(calls)) if turn % 2 == 0 else reversed(range(len(calls)))
        for i in order:
            started = time.perf_counter()
            sizes[i] = calls[i]()
            times[i].append(time.perf_counter() - started)
    return [(statistics.median(t), size) for t, size in zip(times, sizes, strict=True)]


def service_page(scope: RegionScope, query: QueueFilter, after: str | None) -> Callable[[], int]:
    """One page through the service, as a web page or the API asks for it."""
    return lambda: len(list_queue(scope, query, after=after).items)


def query_alone(scope: RegionScope, query: QueueFilter, after: str | None) -> Callable[[], int]:
    """Only the page's SELECT (no masking, no access-log line, no transaction to commit)."""
    statement = _page_query(
        query.states(),
        _conditions(scope, query),
        _position(after) if after else None,
        PAGE_SIZE + 1,
    )

    def run() -> int:
        with scope.engine.connect() as connection:
            return len(connection.execute(statement).all())

    return run


def run(kind: str, small: int, large: int, repeats: int) -> tuple[list[tuple[str, ...]], bool]:
    """Seed, measure, compare on one database; the table's rows and whether the target held."""
    rows: list[tuple[str, ...]] = []
    held = True
    with tempfile.TemporaryDirectory(prefix="agenthub-bench-review-") as tmp:
        folder = Path(tmp)
        hub = setup(fresh_database(kind, folder), folder)
        try:
            rng = random.Random(20261122)
            for (lan, _, _), n in ((SMALL, small), (LARGE, large)):
                seconds = seed(hub, lan, n, rng)
                rows.append((kind, f"seed {n:,} pending records", f"{seconds:.1f} s", "", "", ""))
            lans = [SMALL[0], LARGE[0]]
            scopes = [
                region_scope(hub, reviewer(lan), lan, Permission.READ_METADATA) for lan in lans
            ]
            for case in CASES:
                pages = [
                    (case.query(hub, lan), case.after(hub, lan), scope)
                    for lan, scope in zip(lans, scopes, strict=True)
                ]
                for how, make in (("", service_page), (": the SELECT alone", query_alone)):
                    if how and not case.target:
                        continue
                    measured = timed_turns([make(s, q, a) for q, a, s in pages], repeats)
                    costs = [cost for cost, _ in measured]
                    sizes = [size for _, size in measured]
                    ratio = costs[1] / costs[0]
                    judged = case.target and not how
                    ok = ratio <= 2.0
                    held = held and (ok or not judged)
                    rows.append(
                        (
                            kind,
                            f"{case.name}{how} ({sizes[0]}/{sizes[1]} rows)",
                            f"{costs[0] * 1000:.2f} ms",
                            f"{costs[1] * 1000:.2f} ms",
                            f"{ratio:.2f} x",
                            ("PASS" if ok else "FAIL") if judged else "(for the record)",
                        )
                    )
        finally:
            hub.close()
            if kind == "postgresql":
                drop_database()
    return rows, held


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000, 20 repetitions")
    parser.add_argument("--large", type=int, help="records in the large queue (default 100,000)")
    parser.add_argument("--repeats", type=int, help="timed pages per case (default 200)")
    parser.add_argument(
        "--db", choices=["postgresql", "sqlite", "both"], default="both", help="default: both"
    )
    args = parser.parse_args()
    small = 1_000
    large = args.large or (10_000 if args.quick else 100_000)
    repeats = args.repeats or (20 if args.quick else 200)
    kinds = ["postgresql", "sqlite"] if args.db == "both" else [args.db]
    table: list[tuple[str, ...]] = []
    held = True
    for kind in kinds:
        rows, ok = run(kind, small, large, repeats)
        table += rows
        held = held and ok
    header = ("db", "page of 50", f"at {small:,}", f"at {large:,}", "ratio", "target <= 2 x")
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"median of {repeats} pages each; personnummer masked and the access log written")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
