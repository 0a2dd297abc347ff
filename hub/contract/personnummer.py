"""Swedish personnummer: check, mask and generate synthetic ones (docs/contract.md).

Only the 12-digit form ``YYYYMMDDNNNN`` is accepted on the wire. Samordningsnummer (day + 60) are
refused because the contract covers Swedish personnummer only.
"""

import datetime
import random
import re
from typing import Final

_PNR_RE: Final = re.compile(r"[0-9]{12}")

# Skatteverket's published test personnummer use birth numbers (the three digits after the date)
# 980–999, a series never given to real people. We generate only inside it so that a generated
# number can never identify a living person, even if a sample escapes into a real system.
TEST_SERIES: Final = range(980, 1000)


def _luhn_digit(nine: str) -> int:
    """Check digit for the first nine of the ten digits YYMMDDNNN (Luhn, weights 2,1,2,…)."""
    total = 0
    for i, ch in enumerate(nine):
        n = int(ch) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return (10 - total % 10) % 10


def check(pnr: str) -> str | None:
    """Return None if ``pnr`` is a valid 12-digit personnummer, else a short English reason.

    The reason never repeats the input, so it can go into a resultText or a log line.
    """
    if not isinstance(pnr, str) or not _PNR_RE.fullmatch(pnr):
        return "must be 12 digits YYYYMMDDNNNN"
    day = int(pnr[6:8])
    if 61 <= day <= 91:
        return "is a samordningsnummer (day 61-91); only personnummer are accepted"
    try:
        datetime.date(int(pnr[0:4]), int(pnr[4:6]), day)
    except ValueError:
        return "does not contain a real birth date"
    if _luhn_digit(pnr[2:11]) != int(pnr[11]):
        return "has a wrong check digit"
    return None


def birth_date(pnr: str) -> datetime.date | None:
    """The birth date in a valid personnummer, or None if ``pnr`` is not valid."""
    if check(pnr) is not None:
        return None
    return datetime.date(int(pnr[0:4]), int(pnr[4:6]), int(pnr[6:8]))


def mask(pnr: str) -> str:
    """Show only the date part: ``"198501011234"`` → ``"19850101-****"``.

    Safe on anything: input that does not look like a personnummer becomes ``"****"`` so that the
    full input is never returned.
    """
    if not isinstance(pnr, str):
        return "****"
    m = re.fullmatch(r"([0-9]{8}|[0-9]{6})[-+]?[0-9]{4}", pnr)
    if m is None:
        return "****"
    return f"{m.group(1)}-****"


def generate(rng: random.Random, *, born: datetime.date | None = None) -> str:
    """Return a valid synthetic personnummer of a woman, with a birth number in the test series.

    The birth number is drawn from 980–998 with an even third digit (even = woman, the screening
    population), the series Skatteverket reserves for its published test personnummer. ``born``
    defaults to a random date 1950–1999 (inside screening ages for decades to come).
    """
    if born is None:
        start = datetime.date(1950, 1, 1).toordinal()
        end = datetime.date(1999, 12, 31).toordinal()
        born = datetime.date.fromordinal(rng.randint(start, end))
    serial = rng.choice([n for n in TEST_SERIES if n % 2 == 0])
    nine = f"{born:%y%m%d}{serial:03d}"
    return f"{born:%Y%m%d}{serial:03d}{_luhn_digit(nine)}"


# Anything that looks like a personnummer in free text: any 12 digits (or 8 + separator + 4), and
# 10-digit YYMMDD[-+]NNNN whose date part looks like a date (day 61–91 included: samordningsnummer
# are personal data too). Not after "SE": HSA-ids are SE + an organisation number, not persons.
MASK_RE: Final = re.compile(
    # Not digits inside an HSA-id (SE…) or a UUID (groups joined by "-" to four hex characters):
    # masking must not mangle the record and message ids operators search the log for.
    r"(?<![0-9])(?<!SE)(?<![0-9a-fA-F]{4}-)"
    r"(?P<date>[0-9]{8}|[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]|6[1-9]|[78][0-9]|9[01]))"
    r"(?P<sep>[-+]?)[0-9]{4}(?![0-9])(?!-[0-9a-fA-F]{4})"
)


def mask_text(text: str) -> str:
    """Mask every personnummer-looking substring of ``text`` (for log filters)."""
    return MASK_RE.sub(lambda m: f"{m.group('date')}{m.group('sep') or '-'}****", text)
