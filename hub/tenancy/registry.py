"""The region registry: member regions, their agreements, environments and drops.

Operators manage it with ``agenthub region add/list/end`` or declaratively with one TOML file per
region in ``regions/`` (``agenthub regions sync``). Every change is written to the operator audit.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from hub.audit import Action, record_operator
from hub.clock import as_utc, utcnow
from hub.contract.hsaid import is_hsa_id
from hub.contract.regions import LAN_CODE_RE
from hub.db import Database
from hub.db.hub_tables import regions
from hub.db.migrate import upgrade_region
from hub.tenancy.keys import KeyDestroyed, KeyStore

if TYPE_CHECKING:
    from hub.tenancy.access import Actor

ENVIRONMENTS = ("SIT", "QA", "PROD")


class RegionError(ValueError):
    """A region definition is invalid or conflicts with the registry; the text says which field."""


@dataclass(frozen=True)
class MemberRegion:
    """One member region as the registry holds it."""

    lan_code: str
    hsa_id: str
    name: str
    organisation_number: str | None = None
    drop_url: str | None = None
    drop_settings: dict[str, Any] = field(default_factory=dict)
    agreement_signed: date | None = None
    platform_confirmed: date | None = None
    environment: str = "SIT"
    active_from: date | None = None
    active_to: date | None = None
    #: The review policy: a flagged record needs the approval of a second reviewer.
    second_review_flagged: bool = False
    #: When ``region end`` ended the agreement (None: never, or reinstated since). Only the
    #: registry sets it; a region file cannot, so a sync cannot undo an end.
    ended_at: datetime | None = None

    def is_active(self, today: date) -> bool:
        """An agreement is active when signed, confirmed by the platform, today is in range, and
        it was not ended (an ended agreement is over at once, not at the end of the day)."""
        return (
            self.ended_at is None
            and self.agreement_signed is not None
            and self.platform_confirmed is not None
            and (self.active_from is None or self.active_from <= today)
            and (self.active_to is None or today <= self.active_to)
        )

    def agreement_state(self, today: date) -> str:
        """A short word for operators: active, pending, not-started or ended."""
        if self.ended_at is not None or (self.active_to is not None and today > self.active_to):
            return "ended"
        if self.agreement_signed is None or self.platform_confirmed is None:
            return "pending"
        if self.active_from is not None and today < self.active_from:
            return "not-started"
        return "active"

    def check(self) -> None:
        """Raise :class:`RegionError` naming the first invalid field."""
        if not LAN_CODE_RE.fullmatch(self.lan_code):
            raise RegionError(f"lan_code must be two digits, got {self.lan_code!r}")
        if not is_hsa_id(self.hsa_id):
            raise RegionError(f"hsa_id {self.hsa_id!r} is not an HSA-id (SE + 10 digits)")
        if not self.name.strip():
            raise RegionError("name must not be empty")
        if self.environment not in ENVIRONMENTS:
            raise RegionError(f"environment must be one of {', '.join(ENVIRONMENTS)}")
        if self.active_from and self.active_to and self.active_to < self.active_from:
            raise RegionError("active_to is before active_from")
        if self.drop_url is not None and not (
            self.drop_url.startswith(("sftp://", "file://", "/")) or "://" not in self.drop_url
        ):
            raise RegionError("drop must be a folder path, file:// or sftp:// URL")


def _row_to_region(row: Any) -> MemberRegion:
    return MemberRegion(
        lan_code=row.lan_code,
        hsa_id=row.hsa_id,
        name=row.name,
        organisation_number=row.organisation_number,
        drop_url=row.drop_url,
        drop_settings=dict(row.drop_settings or {}),
        agreement_signed=row.agreement_signed,
        platform_confirmed=row.platform_confirmed,
        environment=row.environment,
        active_from=row.active_from,
        active_to=row.active_to,
        second_review_flagged=bool(row.second_review_flagged),
        ended_at=as_utc(row.ended_at),
    )


def get_region(connection: Connection, lan_code: str) -> MemberRegion | None:
    """The region with this län code, or None."""
    row = connection.execute(select(regions).where(regions.c.lan_code == lan_code)).first()
    return None if row is None else _row_to_region(row)


def list_regions(connection: Connection) -> list[MemberRegion]:
    """Every registered region, by län code."""
    rows = connection.execute(select(regions).order_by(regions.c.lan_code))
    return [_row_to_region(row) for row in rows]


def _values(region: MemberRegion) -> dict[str, Any]:
    values = asdict(region)
    values["drop_settings"] = dict(region.drop_settings)
    return values


def ended_text(region: MemberRegion) -> str:
    """Why an ended region cannot be saved from a definition, and what to do instead."""
    assert region.ended_at is not None
    return (
        f"region {region.lan_code} was ended on {region.ended_at:%Y-%m-%d %H:%M} UTC; a region "
        "definition never revives an ended region: remove its file, or re-onboard it explicitly "
        f"with `agenthub region reinstate --lan {region.lan_code}`"
    )


def save_region(
    db: Database, keys: KeyStore, region: MemberRegion, actor: Actor, *, create: bool
) -> str:
    """Insert or update a region, give it a key and a migrated store; return what happened.

    ``create=True`` refuses a län code that already exists (``region add``); ``create=False``
    updates or inserts (``regions sync``). Returns "added", "updated" or "unchanged". An ended
    region is refused (:func:`ended_text`): only :func:`reinstate_region` brings one back.
    """
    region.check()
    now = utcnow()
    with db.hub.begin() as connection:
        existing = get_region(connection, region.lan_code)
        if existing is not None and create:
            raise RegionError(f"region {region.lan_code} already exists")
        if existing is not None and existing.ended_at is not None:
            raise RegionError(ended_text(existing))
        region = replace(region, ended_at=None)
        if existing == region:
            outcome = "unchanged"
        elif existing is None:
            connection.execute(
                regions.insert().values(**_values(region), created_at=now, updated_at=now)
            )
            outcome = "added"
        else:
            connection.execute(
                update(regions)
                .where(regions.c.lan_code == region.lan_code)
                .values(**_values(region), updated_at=now)
            )
            outcome = "updated"
        try:
            keys.create(connection, region.lan_code)
        except KeyDestroyed:
            raise RegionError(
                f"region {region.lan_code}: its key was destroyed; re-onboard it explicitly "
                f"with `agenthub region reinstate --lan {region.lan_code}`"
            ) from None
        if outcome != "unchanged":
            action = Action.REGION_ADDED if outcome == "added" else Action.REGION_UPDATED
            record_operator(connection, actor, action, region.lan_code, region.name)
    # The store is migrated outside the hub transaction: on PostgreSQL it is another schema's DDL.
    upgrade_region(db, region.lan_code)
    return outcome


def end_agreement(
    db: Database, keys: KeyStore, lan_code: str, actor: Actor, *, destroy_key: bool, today: date
) -> None:
    """End a region's agreement now; with ``destroy_key`` its stored data becomes unreadable.

    From the commit on, every process refuses the region: inbound calls are answered ERROR and
    stored nowhere (the key's row changes, destroyed or wrapped anew, and the group commit checks
    it in the same transaction as its insert; a process that has no copy yet reads ``ended_at``
    first), its outbox is no longer sent and its extracts no longer picked up. Data
    received before the end is still handed back (delivery, receipts) unless the key is
    destroyed. Ending an ended region again keeps the first end's time.
    """
    now = utcnow()
    with db.hub.begin() as connection:
        region = get_region(connection, lan_code)
        if region is None:
            raise RegionError(f"region {lan_code} is not registered")
        last_day = today
        if region.active_from is not None and region.active_from > today:
            last_day = region.active_from  # never before the first day: the dates stay valid
        connection.execute(
            update(regions)
            .where(regions.c.lan_code == lan_code)
            .values(active_to=last_day, ended_at=region.ended_at or now, updated_at=now)
        )
        if destroy_key:
            keys.destroy(connection, lan_code)
        else:
            # The same key, wrapped anew: every copy cached by a serving process stops matching
            # the key's row, which the inbound store checks in its own transaction.
            keys.rewrap(connection, lan_code)
        record_operator(
            connection, actor, Action.REGION_ENDED, lan_code, f"destroy_key={destroy_key}"
        )
    keys.forget(lan_code)


def reinstate_region(db: Database, keys: KeyStore, lan_code: str, actor: Actor) -> bool:
    """Re-onboard an ended region (``agenthub region reinstate``); return whether it got a new key.

    The explicit act that undoes :func:`end_agreement`: the end and its last day are cleared
    (a sync then sets the dates from the region's file again). A region whose key was destroyed
    gets a new one; what it stored before stays unreadable and is listed as such.
    """
    with db.hub.begin() as connection:
        region = get_region(connection, lan_code)
        if region is None:
            raise RegionError(f"region {lan_code} is not registered")
        if region.ended_at is None:
            raise RegionError(f"region {lan_code} is not ended; nothing to reinstate")
        connection.execute(
            update(regions)
            .where(regions.c.lan_code == lan_code)
            .values(active_to=None, ended_at=None, updated_at=utcnow())
        )
        rekeyed = keys.create(connection, lan_code, rekey=True)
        record_operator(connection, actor, Action.REGION_REINSTATED, lan_code, f"new_key={rekeyed}")
    upgrade_region(db, lan_code)
    return rekeyed


def _date(value: Any, where: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise RegionError(f"{where} must be a date (YYYY-MM-DD), got {value!r}") from None


def region_from_file(path: Path) -> MemberRegion:
    """Read one region file (TOML, see ``regions/README.md``)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RegionError(f"{path.name}: {exc}") from None
    agreement = data.get("agreement", {})
    review = data.get("review", {})
    if not isinstance(review, dict) or set(review) - {"second_reviewer_for_flagged"}:
        raise RegionError(f"{path.name}: [review] takes only second_reviewer_for_flagged")
    known = {
        "lan_code",
        "hsa_id",
        "name",
        "organisation_number",
        "environment",
        "drop",
        "drop_settings",
        "agreement",
        "review",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise RegionError(f"{path.name}: unknown keys {', '.join(unknown)}")
    try:
        region = MemberRegion(
            lan_code=str(data["lan_code"]),
            hsa_id=str(data["hsa_id"]),
            name=str(data["name"]),
            organisation_number=data.get("organisation_number"),
            drop_url=data.get("drop"),
            drop_settings=dict(data.get("drop_settings", {})),
            environment=str(data.get("environment", "SIT")).upper(),
            agreement_signed=_date(agreement.get("signed"), f"{path.name}: agreement.signed"),
            platform_confirmed=_date(
                agreement.get("platform_confirmed"), f"{path.name}: agreement.platform_confirmed"
            ),
            active_from=_date(agreement.get("active_from"), f"{path.name}: agreement.active_from"),
            active_to=_date(agreement.get("active_to"), f"{path.name}: agreement.active_to"),
            second_review_flagged=bool(review.get("second_reviewer_for_flagged", False)),
        )
    except KeyError as exc:
        raise RegionError(f"{path.name}: missing key {exc.args[0]}") from None
    try:
        region.check()
    except RegionError as exc:
        raise RegionError(f"{path.name}: {exc}") from None
    return region


def sync_regions(db: Database, keys: KeyStore, folder: Path, actor: Actor) -> dict[str, str]:
    """Make the registry match the files in ``folder``; return län code → outcome.

    All files are read and checked before anything is written, so one bad file changes nothing.
    Regions that have no file are reported as "not-in-files" and left alone: offboarding is an
    explicit act (``region end``), never the side effect of a missing file. Nor is onboarding
    again: a file of an ended region fails the whole sync, saying which and why.
    """
    files = sorted(folder.glob("*.toml"))
    parsed = [region_from_file(path) for path in files]
    seen: dict[str, str] = {}
    for path, region in zip(files, parsed, strict=True):
        if region.lan_code in seen:
            raise RegionError(f"{path.name}: län {region.lan_code} also in {seen[region.lan_code]}")
        seen[region.lan_code] = path.name
    with db.hub.connect() as connection:
        ended = {r.lan_code: r for r in list_regions(connection) if r.ended_at is not None}
    revived = [
        f"{path.name}: {ended_text(ended[region.lan_code])}"
        for path, region in zip(files, parsed, strict=True)
        if region.lan_code in ended
    ]
    if revived:
        raise RegionError("; ".join(revived))
    outcome = {r.lan_code: save_region(db, keys, r, actor, create=False) for r in parsed}
    with db.hub.connect() as connection:
        for region in list_regions(connection):
            outcome.setdefault(region.lan_code, "not-in-files")
    return outcome
