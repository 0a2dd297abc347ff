"""The 21 Swedish regions: län code → name and HSA-id root (from shared/contract/regions.csv).

Copied into code because the CSV is reference material, not part of the package. The HSA-id root
is "SE" + the region's organisation number; several are unverified (derived), which is fine
for synthetic samples and for naming regions, but never use this table to authenticate anyone.
"""

import re
from typing import Final, NamedTuple

#: The form of a län code (two digits); :func:`is_lan_code` also checks that it is one of the 21.
LAN_CODE_RE: Final = re.compile(r"[0-9]{2}")


class RegionInfo(NamedTuple):
    """A region's display name and organisation-level HSA-id."""

    name: str
    hsa_root: str


REGIONS: Final[dict[str, RegionInfo]] = {
    "01": RegionInfo("Region Stockholm", "SE2321000016"),
    "03": RegionInfo("Region Uppsala", "SE2321000024"),
    "04": RegionInfo("Region Sörmland", "SE2321000032"),
    "05": RegionInfo("Region Östergötland", "SE2321000040"),
    "06": RegionInfo("Region Jönköpings län", "SE2321000057"),
    "07": RegionInfo("Region Kronoberg", "SE2321000065"),
    "08": RegionInfo("Region Kalmar län", "SE2321000073"),
    "09": RegionInfo("Region Gotland", "SE2120000803"),
    "10": RegionInfo("Region Blekinge", "SE2321000081"),
    "12": RegionInfo("Region Skåne", "SE2321000255"),
    "13": RegionInfo("Region Halland", "SE2321000115"),
    "14": RegionInfo("Västra Götalandsregionen", "SE2321000131"),
    "17": RegionInfo("Region Värmland", "SE2321000156"),
    "18": RegionInfo("Region Örebro län", "SE2321000164"),
    "19": RegionInfo("Region Västmanland", "SE2321000172"),
    "20": RegionInfo("Region Dalarna", "SE2321000180"),
    "21": RegionInfo("Region Gävleborg", "SE2321000198"),
    "22": RegionInfo("Region Västernorrland", "SE2321000206"),
    "23": RegionInfo("Region Jämtland Härjedalen", "SE2321000214"),
    "24": RegionInfo("Region Västerbotten", "SE2321000222"),
    "25": RegionInfo("Region Norrbotten", "SE2321000230"),
}


def is_lan_code(s: str) -> bool:
    """True if ``s`` is exactly one of the 21 two-digit län codes (no spaces, no case games)."""
    return s in REGIONS
