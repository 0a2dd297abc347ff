"""Typed, immutable model of the request payload (docs/contract.md).

Dates stay the 8-character strings received: the schema pattern admits impossible dates, and the
validator, not the model, decides what to do about them. Unknown ``##other`` extension elements are
not modelled; the raw message is what gets stored.
"""

from dataclasses import dataclass, field
from typing import Literal

import orjson

Kind = Literal["no_information", "sample", "treatment", "move"]


@dataclass(frozen=True)
class II:
    """An instance identifier: ``root`` names the id system, ``extension`` the id."""

    root: str
    extension: str | None = None


@dataclass(frozen=True)
class CV:
    """A coded value."""

    code: str
    code_system: str
    code_system_name: str | None = None
    code_system_version: str | None = None
    display_name: str | None = None
    original_text: str | None = None


@dataclass(frozen=True)
class Organisation:
    """An organisation identified by HSA-id."""

    id: II
    name: str


@dataclass(frozen=True)
class Region:
    """A region, optionally with the care giver and care unit inside it."""

    region: Organisation
    care_giver: Organisation | None = None
    care_unit: Organisation | None = None


@dataclass(frozen=True)
class Person:
    """The woman the information is about."""

    # repr=False: a model printed in a log line or a failed assert must not show the personnummer.
    person_id: II = field(repr=False)


@dataclass(frozen=True)
class Exclusion:
    """The woman is excluded from screening."""

    reason: CV
    registered_at: str
    original_region: Region


@dataclass(frozen=True)
class FollowUpGroup:
    """The woman belongs to a follow-up group."""

    type: CV
    inclusion_date: str
    original_region: Region


@dataclass(frozen=True)
class HPVStatus:
    """One HPV analysis result."""

    value: CV


@dataclass(frozen=True)
class Specimen:
    """A cervical sample and, if analysed for HPV, its results."""

    specimen_date: str
    original_region: Region
    hpv_status_list: tuple[HPVStatus, ...] = ()


@dataclass(frozen=True)
class PlannedInvitation:
    """The next planned invitation."""

    date: str
    reason: str | None = None


@dataclass(frozen=True)
class CervixScreeningInformation:
    """The ``cervixScreeningInformation`` element of one request."""

    subject_of_care: Person
    sending_region: Region
    exclusion: Exclusion | None = None
    follow_up_groups: tuple[FollowUpGroup, ...] = ()
    planned_invitation: PlannedInvitation | None = None
    specimen: Specimen | None = None

    def is_no_information(self) -> bool:
        """Rule R1: only subject and sender, meaning "no invitation-relevant information"."""
        return (
            self.exclusion is None
            and not self.follow_up_groups
            and self.planned_invitation is None
            and self.specimen is None
        )

    @property
    def kind(self) -> Kind:
        """A best guess at the business scenario (docs/contract.md), for logs and dashboards only.

        One interaction carries all three scenarios, so this is a heuristic: a specimen alone is a
        sample taken elsewhere; an exclusion or follow-up without a plan or sample is a treatment;
        anything else with content (a planned invitation, or a mix) is a move.
        """
        if self.is_no_information():
            return "no_information"
        if self.specimen is not None and not (
            self.exclusion or self.follow_up_groups or self.planned_invitation
        ):
            return "sample"
        if self.planned_invitation is None and self.specimen is None:
            return "treatment"
        return "move"

    def to_json(self) -> bytes:
        """The model as UTF-8 JSON, fields named and ordered as here: what a store keeps of it.

        orjson writes the dataclasses as they are, at a small fraction of the cost of ``asdict``
        and ``json.dumps``, which showed up large in the producer's profile (bench/inbound.py).
        """
        return orjson.dumps(self)

    def summary(self) -> dict[str, str | int | bool]:
        """Flags and counts for log lines: no personal identifiers, no codes, no dates."""
        return {
            "kind": self.kind,
            "no_information": self.is_no_information(),
            "has_exclusion": self.exclusion is not None,
            "follow_up_groups": len(self.follow_up_groups),
            "has_planned_invitation": self.planned_invitation is not None,
            "has_specimen": self.specimen is not None,
            "hpv_results": len(self.specimen.hpv_status_list) if self.specimen else 0,
        }
