"""``agenthub`` subcommands of the job runner and drops (worker, drops status, drops retry)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the scheduler process (or every job once with ``--once``)."""
    from hub.config import load_settings
    from hub.context import build_hub
    from hub.jobs.config import load_job_settings
    from hub.jobs.worker import run_once, run_worker
    from hub.migrate import upgrade_all

    settings = load_settings()
    job_settings = load_job_settings()
    hub = build_hub(settings)
    if settings.is_dev:
        # Like `serve`: the embedded default migrates itself; real environments migrate explicitly.
        upgrade_all(hub.db)
    try:
        if args.once:
            outcome = run_once(hub, job_settings)
            delivered = sum(r.delivered for r in outcome.deliver)
            archived = sum(r.archived for r in outcome.pickup)
            print(f"delivered {delivered} message(s); archived {archived} extract(s)")
        else:
            run_worker(hub, job_settings)
    finally:
        hub.close()
    return 0


def cmd_drops_status(args: argparse.Namespace) -> int:
    """Print each region's drop status."""
    from hub.config import load_settings
    from hub.context import build_hub
    from hub.jobs.config import load_job_settings
    from hub.jobs.status import drops_status, format_status, status_json, workers_seen

    hub = build_hub(load_settings())
    try:
        rows = drops_status(hub, load_job_settings(), check=not args.no_check)
        workers = workers_seen(hub)
    finally:
        hub.close()
    if args.json:
        print(json.dumps(status_json(rows, workers), indent=2, ensure_ascii=False))
    else:
        print(format_status(rows, workers, datetime.now(UTC)))
    # Non-zero when a drop is down, so monitoring can call this command as a check.
    return 1 if any(r.reachable is False for r in rows) else 0


def cmd_drops_retry(args: argparse.Namespace) -> int:
    """Clear a region's drop backoff so the worker tries again on its next run."""
    from hub.config import load_settings
    from hub.context import build_hub
    from hub.drops.state import reset
    from hub.tenancy.registry import get_region

    hub = build_hub(load_settings())
    try:
        with hub.db.hub.connect() as connection:
            if get_region(connection, args.lan) is None:
                print(f"region {args.lan} is not registered", file=sys.stderr)
                return 2
        reset(hub.db.hub, args.lan)
    finally:
        hub.close()
    print(f"region {args.lan}: drop will be tried on the worker's next run")
    return 0


def register(sub: Any) -> None:
    """Add this side's subcommands to the ``agenthub`` subparsers ``sub``."""
    worker = sub.add_parser("worker", help="run the job scheduler (delivery, pick-up, retention)")
    worker.add_argument("--once", action="store_true", help="run every job once and exit")
    worker.set_defaults(handler=cmd_worker)

    drops = sub.add_parser("drops", help="region drops")
    drops_sub = drops.add_subparsers(dest="drops_command", required=True)
    status = drops_sub.add_parser("status", help="per region: reachable, last success, backlog")
    status.add_argument(
        "--no-check", action="store_true", help="show the recorded state; do not probe the drops"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_drops_status)
    retry = drops_sub.add_parser("retry", help="end a region's drop backoff now")
    retry.add_argument("--lan", required=True)
    retry.set_defaults(handler=cmd_drops_retry)
