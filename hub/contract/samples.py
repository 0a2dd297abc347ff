"""Synthetic sample messages for the three business scenarios (docs/contract.md) and R1.

For demos, the simulator and tests. Pass a personnummer from :func:`personnummer.generate` so a
sample never carries a real person's number; everything else (regions, units) is public or made up.
"""

import dataclasses
import datetime
from typing import Final, Literal

from hub.contract.model import (
    CV,
    II,
    CervixScreeningInformation,
    Exclusion,
    FollowUpGroup,
    HPVStatus,
    Organisation,
    Person,
    PlannedInvitation,
    Region,
    Specimen,
)
from hub.contract.names import HSA_ID_ROOT, PERSON_ID_ROOT, SNOMED_CT
from hub.contract.regions import REGIONS

Scenario = Literal["move", "sample", "treatment", "no_information"]

HYSTERECTOMY: Final = "116140006"
FOLLOW_UP_AFTER_TREATMENT: Final = "59461000052109"
HPV16: Final = "59291000052102"
HPV_NOT_DETECTED: Final = "59311000052101"


def _org(hsa_id: str, name: str) -> Organisation:
    return Organisation(id=II(HSA_ID_ROOT, hsa_id), name=name)


def region_of(lan: str) -> Region:
    """The region-level Region for a län code, as a sender writes ``sendingRegion``."""
    info = REGIONS[lan]
    return Region(region=_org(info.hsa_root, info.name))


def unit_region_of(lan: str, unit: str = "CX01") -> Region:
    """A Region with care giver and a (made-up) women's health unit, for ``originalRegion``."""
    info = REGIONS[lan]
    return Region(
        region=_org(info.hsa_root, info.name),
        care_giver=_org(info.hsa_root, info.name),
        care_unit=_org(f"{info.hsa_root}-{unit}", f"Kvinnohälsovården {unit} (syntetisk)"),
    )


def _cv(code: str) -> CV:
    return CV(code=code, code_system=SNOMED_CT)


def _d(day: datetime.date) -> str:
    return day.strftime("%Y%m%d")


def sample_information(
    scenario: Scenario,
    *,
    pnr: str,
    sending_lan: str,
    original_lan: str | None = None,
    today: datetime.date,
) -> CervixScreeningInformation:
    """A valid message for ``scenario``, with past dates before ``today`` and plans after it.

    ``original_lan`` is where the recorded event happened (defaults to the sender).
    """
    origin = unit_region_of(original_lan or sending_lan)
    base = CervixScreeningInformation(
        subject_of_care=Person(person_id=II(PERSON_ID_ROOT, pnr)),
        sending_region=region_of(sending_lan),
    )
    if scenario == "no_information":
        return base
    if scenario == "sample":
        specimen = Specimen(
            specimen_date=_d(today - datetime.timedelta(days=3)),
            original_region=origin,
            hpv_status_list=(HPVStatus(_cv(HPV16)),),
        )
        return dataclasses.replace(base, specimen=specimen)
    if scenario == "treatment":
        return dataclasses.replace(
            base,
            exclusion=Exclusion(
                reason=_cv(HYSTERECTOMY),
                registered_at=_d(today - datetime.timedelta(days=10)),
                original_region=origin,
            ),
            follow_up_groups=(
                FollowUpGroup(
                    type=_cv(FOLLOW_UP_AFTER_TREATMENT),
                    inclusion_date=_d(today - datetime.timedelta(days=30)),
                    original_region=origin,
                ),
            ),
        )
    # move: the former home region hands over the next invitation and the latest sample.
    return dataclasses.replace(
        base,
        planned_invitation=PlannedInvitation(
            date=_d(today + datetime.timedelta(days=365)), reason="Ordinarie kallelse"
        ),
        specimen=Specimen(
            specimen_date=_d(today - datetime.timedelta(days=400)),
            original_region=origin,
            hpv_status_list=(HPVStatus(_cv(HPV_NOT_DETECTED)),),
        ),
    )
