"""``agenthub send | outbox | resend``: a region's records for other regions, and their sending.

agenthub send --lan 14 --to 01 record.xml     # queue one record (validated first)
agenthub send --lan 14 --to 01 record.xml --wait 30   # … and send it now, without a worker
agenthub outbox --lan 14 [--state failed]     # the region's outbox, personnummer masked
agenthub outbox --lan 14 --id <record id>     # one record with its attempts
agenthub resend --lan 14 <record id>          # put a failed record back in the queue
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hub.cli.common import CliState, Failed, Refused, fmt_time, lan_option, pass_state
from hub.contract.names import SOAP11_ENV_NS
from hub.contract.xmlsafe import parse_untrusted
from hub.outbound.enqueue import enqueue
from hub.outbound.queue import resend
from hub.outbound.sender import drain
from hub.outbound.states import STATES, OutboxError
from hub.outbound.views import get_record, list_outbox
from hub.tenancy.access import Permission

MAX_FILE_BYTES = 5 * 1024 * 1024


def read_record(path: Path) -> Any:
    """The record element of a file: a SOAP envelope, the operation element or the payload."""
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


@click.command("send")
@lan_option("the sending member region's län code")
@click.option("--to", "to_lan", required=True, help="the destination län code (LogicalAddress)")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reference", help="your own reference for the receipt (no personal data)")
@click.option(
    "--wait",
    type=float,
    default=0,
    metavar="SECONDS",
    help="send now and wait up to SECONDS for final states (without a running worker)",
)
@pass_state
def send_command(
    state: CliState, lan: str, to_lan: str, file: Path, reference: str | None, wait: float
) -> None:
    """Queue one record from FILE in region --lan's outbox for --to."""
    scope = state.scope(lan, Permission.DECIDE)
    try:
        element = read_record(file)
        queued = enqueue(scope, to_lan, element, reference=reference or file.name[:200])
    except OutboxError as exc:
        raise Failed(f"send: {exc}") from None
    word = "already queued" if queued.duplicate else "queued"
    click.echo(f"{word}: record {queued.record_id} from {lan} to {to_lan}")
    if queued.check_text:
        click.echo(f"note: {queued.check_text}")
    if wait:
        stats = drain(state.hub, timeout=wait)
        click.echo(
            f"sent: {stats.calls} call(s); delivered {stats.delivered}, refused {stats.refused}, "
            f"failed {stats.failed}, waiting to resend {stats.retried}"
        )


@click.command("outbox")
@lan_option()
@click.option("--state", "state_filter", type=click.Choice(STATES))
@click.option("--id", "record_id", help="show one record with its attempts")
@click.option("--limit", type=int, default=50, show_default=True)
@pass_state
def outbox_command(
    state: CliState, lan: str, state_filter: str | None, record_id: str | None, limit: int
) -> None:
    """List a region's outbox, or show one record with its attempts."""
    scope = state.scope(lan, Permission.READ_METADATA)
    if record_id:
        found = get_record(scope, record_id)
        if found is None:
            raise Refused(f"region {lan} has no outbox record {record_id}")
        record, tries = found
        for key, value in vars(record).items():
            click.echo(f"{key:<16} {value if value is not None else '-'}")
        click.echo(
            f"\n{'#':>2} {'started (UTC)':<19} {'ms':>6} {'outcome':<10} {'code':<12} detail"
        )
        for t in tries:
            click.echo(
                f"{t.attempt:>2} {fmt_time(t.started_at)} {t.duration_ms:>6} {t.outcome:<10} "
                f"{t.code:<12} {t.detail}"
            )
        return
    rows = list_outbox(scope, state=state_filter, limit=limit)
    click.echo(
        f"{'queued (UTC)':<19} {'id':<36} {'to':<3} {'state':<9} {'#':>2} {'kind':<14} "
        f"{'pnr':<14} result"
    )
    for r in rows:
        result = r.result_code or r.fault_code or "-"
        text = r.result_text or r.last_error or ""
        click.echo(
            f"{fmt_time(r.created_at)} {r.id} {r.to_lan:<3} {r.state:<9} {r.attempts:>2} "
            f"{r.kind:<14} {r.masked_pnr:<14} {result} {text}".rstrip()
        )


@click.command("resend")
@lan_option()
@click.argument("record_id", metavar="ID")
@pass_state
def resend_command(state: CliState, lan: str, record_id: str) -> None:
    """Put a failed record back in the queue (the operator fixed the cause)."""
    scope = state.scope(lan, Permission.OPERATE)
    try:
        resend(scope, record_id)
    except OutboxError as exc:
        raise Failed(f"resend: {exc}") from None
    click.echo(f"record {record_id} queued again")


COMMANDS = [send_command, outbox_command, resend_command]
