"""The ``agenthub`` command: serve, migrate, manage regions, inspect a region's messages."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hub.config import ConfigError, load_settings
from hub.context import Hub, build_hub

Handler = Callable[[argparse.Namespace], int]


def _hub() -> Hub:
    return build_hub(load_settings())


def _actor() -> str:
    # Operators act under their own login; the audit says who changed what.
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:
        return "cli:unknown"


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    """Migrate the hub schema and every region's store."""
    from hub.migrate import upgrade_all

    hub = _hub()
    done = upgrade_all(hub.db)
    print(f"hub schema at head; {len(done)} region store(s) at head: {' '.join(done) or '-'}")
    return 0


def _region_from_args(args: argparse.Namespace) -> object:
    from datetime import date

    from hub.tenancy.registry import Region

    def day(value: str | None) -> date | None:
        return date.fromisoformat(value) if value else None

    return Region(
        lan_code=args.lan,
        hsa_id=args.hsa_id,
        name=args.name,
        organisation_number=args.org_number,
        drop_url=args.drop,
        environment=args.environment.upper(),
        agreement_signed=day(args.agreement_signed),
        platform_confirmed=day(args.platform_confirmed),
        active_from=day(args.active_from),
        active_to=day(args.active_to),
    )


def cmd_region_add(args: argparse.Namespace) -> int:
    """Register a member region, create its key and its store."""
    from hub.migrate import upgrade_hub
    from hub.tenancy.registry import Region, save_region

    hub = _hub()
    upgrade_hub(hub.db)
    region = _region_from_args(args)
    assert isinstance(region, Region)
    save_region(hub.db, hub.keys, region, _actor(), create=True)
    print(f"region {region.lan_code} {region.name} added ({region.environment})")
    return 0


def cmd_region_list(_args: argparse.Namespace) -> int:
    """Print every region with its agreement state."""
    from hub.contract.validate import swedish_today
    from hub.tenancy.registry import list_regions

    hub = _hub()
    today = swedish_today()
    with hub.db.hub.connect() as connection:
        rows = list_regions(connection)
    print(f"{'län':<4} {'hsa-id':<14} {'env':<5} {'agreement':<12} {'name':<30} drop")
    for r in rows:
        print(
            f"{r.lan_code:<4} {r.hsa_id:<14} {r.environment:<5} {r.agreement_state(today):<12} "
            f"{r.name:<30} {r.drop_url or '-'}"
        )
    return 0


def cmd_region_end(args: argparse.Namespace) -> int:
    """End a region's agreement; optionally destroy its key (its data becomes unreadable)."""
    from hub.contract.validate import swedish_today
    from hub.tenancy.registry import end_agreement

    hub = _hub()
    end_agreement(
        hub.db, hub.keys, args.lan, _actor(), destroy_key=args.destroy_key, today=swedish_today()
    )
    print(f"region {args.lan}: agreement ended" + ("; key destroyed" if args.destroy_key else ""))
    return 0


def cmd_regions_sync(args: argparse.Namespace) -> int:
    """Make the registry match the region files in a folder."""
    from hub.migrate import upgrade_hub
    from hub.tenancy.registry import sync_regions

    hub = _hub()
    upgrade_hub(hub.db)
    outcome = sync_regions(hub.db, hub.keys, Path(args.folder), _actor())
    for lan, what in sorted(outcome.items()):
        print(f"{lan} {what}")
    return 0


def cmd_messages(args: argparse.Namespace) -> int:
    """List one region's received messages, personnummer masked."""
    from hub.messages import list_messages
    from hub.tenancy.registry import get_region

    hub = _hub()
    with hub.db.hub.connect() as connection:
        if get_region(connection, args.lan) is None:
            print(f"region {args.lan} is not registered", file=sys.stderr)
            return 2
    rows = list_messages(hub, args.lan, _actor(), limit=args.limit)
    print(f"{'received (UTC)':<20} {'id':<36} {'kind':<15} {'pnr':<15} {'code':<5} delivery")
    for m in rows:
        print(
            f"{m.received_at:%Y-%m-%d %H:%M:%S} {m.id} {m.kind:<15} {m.masked_pnr:<15} "
            f"{m.result_code:<5} {m.delivery_state}"
        )
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Print a valid request with a synthetic personnummer, to post with any SOAP tool."""
    import random

    from hub.contract.personnummer import generate
    from hub.contract.samples import sample_information
    from hub.contract.serialise import build_request_envelope
    from hub.contract.validate import swedish_today

    rng = random.Random(args.seed)  # noqa: S311 - synthetic test people, not secrets
    info = sample_information(
        args.scenario, pnr=generate(rng), sending_lan=args.sender, today=swedish_today()
    )
    sys.stdout.write(build_request_envelope(args.lan, info).decode("utf-8"))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the producer and the web app: gunicorn, or in dev and test werkzeug's server."""
    from hub.server import ServeError, serve

    try:
        serve(args.host, args.port, workers=args.workers)
    except ServeError as exc:
        print(f"agenthub serve: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """A complete exchange on loopback: hub, worker and NTjP simulator with the demo regions."""
    from hub.demo import run_demo

    settings = load_settings()
    if not settings.is_dev:
        print("agenthub demo runs only with AGENTHUB_ENV=dev or test", file=sys.stderr)
        return 2
    return run_demo(
        settings, port=args.port, sim_port=args.sim_port, once=args.once, timeout=args.timeout
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``agenthub``."""
    parser = argparse.ArgumentParser(prog="agenthub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the SOAP producer and the web app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="gunicorn workers; 0 = one threaded development server (default in dev and test; "
        "elsewhere 4 workers)",
    )
    serve.set_defaults(handler=cmd_serve)

    db = sub.add_parser("db", help="database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate the hub schema and every region store").set_defaults(
        handler=cmd_db_upgrade
    )

    region = sub.add_parser("region", help="one member region")
    region_sub = region.add_subparsers(dest="region_command", required=True)
    add = region_sub.add_parser("add", help="register a member region")
    add.add_argument("--lan", required=True, help="two-digit län code (the logical address)")
    add.add_argument("--hsa-id", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--org-number")
    add.add_argument("--drop", help="folder path or sftp://user@host:port/path")
    add.add_argument(
        "--environment", default="SIT", choices=["SIT", "QA", "PROD", "sit", "qa", "prod"]
    )
    add.add_argument("--agreement-signed", help="YYYY-MM-DD")
    add.add_argument("--platform-confirmed", help="YYYY-MM-DD")
    add.add_argument("--active-from", help="YYYY-MM-DD")
    add.add_argument("--active-to", help="YYYY-MM-DD")
    add.set_defaults(handler=cmd_region_add)
    region_sub.add_parser("list", help="list regions").set_defaults(handler=cmd_region_list)
    end = region_sub.add_parser("end", help="end a region's agreement")
    end.add_argument("--lan", required=True)
    end.add_argument(
        "--destroy-key",
        action="store_true",
        help="destroy the region's key: its stored data becomes unreadable",
    )
    end.set_defaults(handler=cmd_region_end)

    regions = sub.add_parser("regions", help="all regions")
    regions_sub = regions.add_subparsers(dest="regions_command", required=True)
    sync = regions_sub.add_parser("sync", help="sync the registry from region files")
    sync.add_argument("folder", nargs="?", default="regions")
    sync.set_defaults(handler=cmd_regions_sync)

    msgs = sub.add_parser("messages", help="a region's received messages (personnummer masked)")
    msgs.add_argument("--lan", required=True)
    msgs.add_argument("--limit", type=int, default=50)
    msgs.set_defaults(handler=cmd_messages)

    sample = sub.add_parser("sample", help="print a valid request (synthetic personnummer)")
    sample.add_argument("--lan", required=True, help="LogicalAddress: the receiving län code")
    sample.add_argument("--sender", default="05", help="the sending region's län code")
    sample.add_argument(
        "--scenario", default="move", choices=["move", "sample", "treatment", "no_information"]
    )
    sample.add_argument("--seed", type=int, default=None, help="repeatable personnummer")
    sample.set_defaults(handler=cmd_sample)

    demo = sub.add_parser("demo", help="a full exchange on loopback with the demo regions")
    demo.add_argument("--port", type=int, default=8080, help="the hub's port")
    demo.add_argument("--sim-port", type=int, default=8090, help="the simulator's port")
    demo.add_argument("--once", action="store_true", help="exit after the exchange")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it")
    demo.set_defaults(handler=cmd_demo)

    # Each side of the hub adds its own commands, so no one file grows with every feature.
    from hub.consumer.cli import register as register_consumer
    from hub.jobs.cli import register as register_jobs

    register_jobs(sub)
    register_consumer(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agenthub`` console script."""
    from hub.tenancy.registry import RegionError

    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, RegionError, ValueError) as exc:
        print(f"agenthub: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
