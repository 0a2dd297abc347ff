"""``agenthub region add | list | end | sync``: the member regions (and ``regions sync``)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from hub.cli.common import CliState, pass_state
from hub.clock import swedish_today
from hub.db.migrate import upgrade_hub
from hub.tenancy.registry import (
    MemberRegion,
    end_agreement,
    list_regions,
    reinstate_region,
    save_region,
    sync_regions,
)

_DATE = click.DateTime(formats=["%Y-%m-%d"])


def _day(value: object) -> date | None:
    return value.date() if value is not None else None  # type: ignore[attr-defined]


@click.group("region")
def region_group() -> None:
    """One member region: onboard, list, offboard, or sync all from region files."""


@region_group.command("add")
@click.option("--lan", required=True, help="two-digit län code (the logical address)")
@click.option("--hsa-id", required=True)
@click.option("--name", required=True)
@click.option("--org-number")
@click.option("--drop", help="folder path or sftp://user@host:port/path")
@click.option(
    "--environment",
    default="SIT",
    show_default=True,
    type=click.Choice(["SIT", "QA", "PROD"], case_sensitive=False),
)
@click.option("--agreement-signed", type=_DATE, help="YYYY-MM-DD")
@click.option("--platform-confirmed", type=_DATE, help="YYYY-MM-DD")
@click.option("--active-from", type=_DATE, help="YYYY-MM-DD")
@click.option("--active-to", type=_DATE, help="YYYY-MM-DD")
@click.option(
    "--second-reviewer-for-flagged",
    is_flag=True,
    help="a flagged record (protected identity, blocked, objection) is sent only after a "
    "second reviewer, another person, approved it too",
)
@pass_state
def add(
    state: CliState,
    lan: str,
    hsa_id: str,
    name: str,
    org_number: str | None,
    drop: str | None,
    environment: str,
    agreement_signed: object,
    platform_confirmed: object,
    active_from: object,
    active_to: object,
    second_reviewer_for_flagged: bool,
) -> None:
    """Register a member region, create its key and its store."""
    hub = state.hub
    upgrade_hub(hub.db)
    region = MemberRegion(
        lan_code=lan,
        hsa_id=hsa_id,
        name=name,
        organisation_number=org_number,
        drop_url=drop,
        environment=environment.upper(),
        agreement_signed=_day(agreement_signed),
        platform_confirmed=_day(platform_confirmed),
        active_from=_day(active_from),
        active_to=_day(active_to),
        second_review_flagged=second_reviewer_for_flagged,
    )
    save_region(hub.db, hub.keys, region, state.actor, create=True)
    policy = "; flagged records need a second reviewer" if second_reviewer_for_flagged else ""
    click.echo(f"region {region.lan_code} {region.name} added ({region.environment}){policy}")


@region_group.command("list")
@pass_state
def list_command(state: CliState) -> None:
    """Print every region with its agreement state."""
    today = swedish_today()
    with state.hub.db.hub.connect() as connection:
        rows = list_regions(connection)
    click.echo(
        f"{'län':<4} {'hsa-id':<14} {'env':<5} {'agreement':<12} {'review':<12} {'name':<30} drop"
    )
    for r in rows:
        # The review policy: how many reviewers a flagged record needs.
        review = "2 if flagged" if r.second_review_flagged else "1"
        click.echo(
            f"{r.lan_code:<4} {r.hsa_id:<14} {r.environment:<5} {r.agreement_state(today):<12} "
            f"{review:<12} {r.name:<30} {r.drop_url or '-'}"
        )


@region_group.command("end")
@click.option("--lan", required=True)
@click.option(
    "--destroy-key",
    is_flag=True,
    help="destroy the region's key: its stored data becomes unreadable",
)
@pass_state
def end(state: CliState, lan: str, destroy_key: bool) -> None:
    """End a region's agreement; optionally destroy its key (its data becomes unreadable)."""
    hub = state.hub
    end_agreement(
        hub.db, hub.keys, lan, state.actor, destroy_key=destroy_key, today=swedish_today()
    )
    click.echo(f"region {lan}: agreement ended" + ("; key destroyed" if destroy_key else ""))


@region_group.command("reinstate")
@click.option("--lan", required=True)
@pass_state
def reinstate(state: CliState, lan: str) -> None:
    """Re-onboard an ended region (a sync never does); a destroyed key is replaced by a new one.

    What the region stored under a destroyed key stays unreadable and is listed as such.
    """
    hub = state.hub
    upgrade_hub(hub.db)
    rekeyed = reinstate_region(hub.db, hub.keys, lan, state.actor)
    hub.router.invalidate(lan)
    note = "; a new key was made (data under the destroyed one stays unreadable)"
    click.echo(f"region {lan}: reinstated" + (note if rekeyed else ""))


@click.command("sync")
@click.argument("folder", default="regions", type=click.Path(file_okay=False, path_type=Path))
@pass_state
def sync(state: CliState, folder: Path) -> None:
    """Make the registry match the region files in FOLDER (default: regions/)."""
    hub = state.hub
    upgrade_hub(hub.db)
    outcome = sync_regions(hub.db, hub.keys, folder, state.actor)
    for lan, what in sorted(outcome.items()):
        click.echo(f"{lan} {what}")


region_group.add_command(sync)


@click.group("regions")
def regions_group() -> None:
    """All member regions (``regions sync`` is ``region sync``)."""


regions_group.add_command(sync)

COMMANDS = [region_group, regions_group]
