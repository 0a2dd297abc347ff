"""``agenthub`` subcommands of the consumer side: send, outbox, resend, alerts, ntjp-sim.

agenthub send --lan 14 --to 01 record.xml     # queue one approved record (validated first)
agenthub send --lan 14 --to 01 record.xml --wait 30   # … and send it now, without a worker
agenthub outbox --lan 14 [--state failed]     # the region's outbox, personnummer masked
agenthub outbox --lan 14 --id <record id>     # one record with its attempts
agenthub resend --lan 14 <record id>          # put a failed record back in the queue
agenthub alerts [--all] [--ack <alert id>]    # operator alerts of the senders
agenthub ntjp-sim [--host] [--port] [--config routes.toml]   # the local NTjP
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hub.consumer.settings import SIM_DEFAULT_PORT

MAX_FILE_BYTES = 5 * 1024 * 1024


def _read_record(path: Path) -> Any:
    """The record element of a file: a SOAP envelope, the operation element or the payload."""
    from hub.contract.names import SOAP11_ENV_NS
    from hub.contract.xmlsafe import parse_untrusted

    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    root = parse_untrusted(data, MAX_FILE_BYTES)
    if root.tag == f"{{{SOAP11_ENV_NS}}}Envelope":
        body = root.find(f"{{{SOAP11_ENV_NS}}}Body")
        element = None if body is None else next(iter(body), None)
        if element is None:
            raise ValueError(f"{path}: the SOAP Body is empty")
        return element
    return root


def cmd_send(args: argparse.Namespace) -> int:
    """Queue one record from a file in region ``--lan``'s outbox for ``--to``."""
    from hub.cli import _actor, _hub
    from hub.consumer.outbox import OutboxError, enqueue
    from hub.consumer.sender import drain

    hub = _hub()
    try:
        element = _read_record(Path(args.file))
        queued = enqueue(
            hub,
            args.lan,
            args.to,
            element,
            _actor(),
            reference=args.reference or Path(args.file).name[:200],
        )
    except OutboxError as exc:
        print(f"agenthub send: {exc}", file=sys.stderr)
        return 1
    word = "already queued" if queued.duplicate else "queued"
    print(f"{word}: record {queued.record_id} from {args.lan} to {args.to}")
    if queued.check_text:
        print(f"note: {queued.check_text}")
    if args.wait:
        stats = drain(hub, timeout=args.wait)
        print(
            f"sent: {stats.calls} call(s); delivered {stats.delivered}, refused {stats.refused}, "
            f"failed {stats.failed}, waiting to resend {stats.retried}"
        )
    return 0


def _fmt_time(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def cmd_outbox(args: argparse.Namespace) -> int:
    """List a region's outbox, or show one record with its attempts."""
    from hub.cli import _actor, _hub
    from hub.consumer.outbox import get_record, list_outbox
    from hub.tenancy.registry import get_region

    hub = _hub()
    with hub.db.hub.connect() as connection:
        if get_region(connection, args.lan) is None:
            print(f"region {args.lan} is not registered", file=sys.stderr)
            return 2
    if args.id:
        found = get_record(hub, args.lan, args.id, _actor())
        if found is None:
            print(f"region {args.lan} has no outbox record {args.id}", file=sys.stderr)
            return 2
        record, tries = found
        for key, value in vars(record).items():
            print(f"{key:<16} {value if value is not None else '-'}")
        print(f"\n{'#':>2} {'started (UTC)':<19} {'ms':>6} {'outcome':<10} {'code':<12} detail")
        for t in tries:
            print(
                f"{t.attempt:>2} {_fmt_time(t.started_at)} {t.duration_ms:>6} {t.outcome:<10} "
                f"{t.code:<12} {t.detail}"
            )
        return 0
    rows = list_outbox(hub, args.lan, _actor(), state=args.state, limit=args.limit)
    print(
        f"{'queued (UTC)':<19} {'id':<36} {'to':<3} {'state':<9} {'#':>2} {'kind':<14} "
        f"{'pnr':<14} result"
    )
    for r in rows:
        result = r.result_code or r.fault_code or "-"
        text = r.result_text or r.last_error or ""
        print(
            f"{_fmt_time(r.created_at)} {r.id} {r.to_lan:<3} {r.state:<9} {r.attempts:>2} "
            f"{r.kind:<14} {r.masked_pnr:<14} {result} {text}".rstrip()
        )
    return 0


def cmd_resend(args: argparse.Namespace) -> int:
    """Put a failed record back in the queue (the operator fixed the cause)."""
    from hub.cli import _actor, _hub
    from hub.consumer.outbox import OutboxError, resend

    try:
        resend(_hub(), args.lan, args.id, _actor())
    except OutboxError as exc:
        print(f"agenthub resend: {exc}", file=sys.stderr)
        return 1
    print(f"record {args.id} queued again")
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    """List the senders' operator alerts, or acknowledge one."""
    from hub.cli import _actor, _hub
    from hub.consumer.outbox import acknowledge_alert, list_alerts

    hub = _hub()
    if args.ack is not None:
        if not acknowledge_alert(hub, args.ack, _actor()):
            print(f"no open alert {args.ack}", file=sys.stderr)
            return 1
        print(f"alert {args.ack} acknowledged")
        return 0
    rows = list_alerts(hub, lan=args.lan, include_acknowledged=args.all, limit=args.limit)
    print(f"{'id':>5} {'at (UTC)':<19} {'län':<3} {'to':<3} {'kind':<13} {'code':<12} record")
    for a in rows:
        ack = f" (ack {a.acknowledged_by})" if a.acknowledged_by else ""
        print(
            f"{a.id:>5} {_fmt_time(a.at)} {a.lan_code:<3} {a.to_lan or '-':<3} {a.kind:<13} "
            f"{a.code:<12} {a.record_id or '-'}{ack}\n      {a.detail}"
        )
    return 0


def cmd_ntjp_sim(args: argparse.Namespace) -> int:
    """Serve the NTjP simulator until interrupted."""
    import os

    from hub.config import env_choice
    from hub.logs import configure_logging
    from hub.sim import run_sim

    level = env_choice(
        os.environ, "AGENTHUB_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
    )
    configure_logging(level.upper())
    run_sim(args.host, args.port, args.config)
    return 0


def register(sub: Any) -> None:
    """Add this side's subcommands to the ``agenthub`` subparsers ``sub``."""
    send = sub.add_parser("send", help="queue an approved record for another region")
    send.add_argument("--lan", required=True, help="the sending member region's län code")
    send.add_argument("--to", required=True, help="the destination län code (LogicalAddress)")
    send.add_argument("file", help="XML: a SOAP request, the operation element or the payload")
    send.add_argument("--reference", help="your own reference for the receipt (no personal data)")
    send.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="send now and wait up to SECONDS for final states (without a running worker)",
    )
    send.set_defaults(handler=cmd_send)

    outbox = sub.add_parser("outbox", help="a region's outbox (personnummer masked)")
    outbox.add_argument("--lan", required=True)
    outbox.add_argument("--state", choices=["queued", "sending", "delivered", "refused", "failed"])
    outbox.add_argument("--id", help="show one record with its attempts")
    outbox.add_argument("--limit", type=int, default=50)
    outbox.set_defaults(handler=cmd_outbox)

    again = sub.add_parser("resend", help="put a failed outbox record back in the queue")
    again.add_argument("--lan", required=True)
    again.add_argument("id", help="the record id")
    again.set_defaults(handler=cmd_resend)

    alert = sub.add_parser("alerts", help="operator alerts of the senders")
    alert.add_argument("--lan", help="only this sending region")
    alert.add_argument("--all", action="store_true", help="include acknowledged alerts")
    alert.add_argument("--ack", type=int, metavar="ID", help="acknowledge an alert")
    alert.add_argument("--limit", type=int, default=50)
    alert.set_defaults(handler=cmd_alerts)

    sim = sub.add_parser("ntjp-sim", help="run the local NTjP simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=SIM_DEFAULT_PORT)
    sim.add_argument("--config", help="routes TOML (see hub/sim/routes.example.toml)")
    sim.set_defaults(handler=cmd_ntjp_sim)
