"""Personnummer: check, mask, generate and masking in free text."""

import datetime
import random

import pytest

from hub.contract import personnummer


def _with_check_digit(eleven: str) -> str:
    for d in "0123456789":
        if personnummer.check(eleven + d) is None:
            return eleven + d
    raise AssertionError("no check digit fits")


def test_generated_numbers_are_always_valid_and_in_the_test_series() -> None:
    rng = random.Random(20240601)
    for _ in range(2000):
        pnr = personnummer.generate(rng)
        assert personnummer.check(pnr) is None
        assert int(pnr[8:11]) in personnummer.TEST_SERIES
        assert int(pnr[10]) % 2 == 0  # women: the screening population


def test_generate_uses_the_given_birth_date() -> None:
    pnr = personnummer.generate(random.Random(1), born=datetime.date(1984, 2, 29))
    assert pnr.startswith("19840229")
    assert personnummer.birth_date(pnr) == datetime.date(1984, 2, 29)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p[:11], "12 digits"),
        (lambda p: p + "0", "12 digits"),
        (lambda p: p[:8] + "-" + p[8:], "12 digits"),
        (lambda p: p[:11] + "x", "12 digits"),
        (lambda p: p[:10] + "١" + p[11:], "12 digits"),  # a non-ASCII digit
        (lambda p: p[:11] + str((int(p[11]) + 1) % 10), "check digit"),
    ],
)
def test_check_refuses_wrong_shapes_and_check_digits(mutate: object, reason: str) -> None:
    pnr = personnummer.generate(random.Random(7))
    bad = mutate(pnr)  # type: ignore[operator]
    result = personnummer.check(bad)
    assert result is not None and reason in result
    assert pnr not in result and bad not in result


def test_check_refuses_impossible_dates_and_samordningsnummer() -> None:
    # No check digit can make these valid, so any will do: the date is checked first.
    assert "real birth date" in (personnummer.check("198502319800") or "")
    assert "real birth date" in (personnummer.check("198513019800") or "")
    assert "samordningsnummer" in (personnummer.check("198501619800") or "")  # day 01 + 60


def test_check_accepts_a_leap_day() -> None:
    assert personnummer.check(_with_check_digit("20000229982")) is None


@pytest.mark.parametrize(
    "garbage", ["", "abc", "1985010112345678", "19850101-12345", "x" * 50, "19850101 1234"]
)
def test_mask_never_returns_the_input(garbage: str) -> None:
    masked = personnummer.mask(garbage)
    assert masked != garbage or garbage == ""
    assert "1234" not in masked


def test_mask_keeps_only_the_date() -> None:
    pnr = personnummer.generate(random.Random(3))
    assert personnummer.mask(pnr) == f"{pnr[:8]}-****"
    assert personnummer.mask(f"{pnr[:8]}-{pnr[8:]}") == f"{pnr[:8]}-****"


def test_mask_text_masks_every_form_and_leaves_hsa_ids() -> None:
    pnr = personnummer.generate(random.Random(4))
    text = (
        f"a={pnr} b={pnr[:8]}-{pnr[8:]} c={pnr[2:8]}-{pnr[8:]} d={pnr[2:]} "
        "unit SE2321000016-CX01 org SE162321000255-AB1 ok"
    )
    masked = personnummer.mask_text(text)
    assert pnr[8:] not in masked
    assert "SE2321000016-CX01" in masked and "SE162321000255-AB1" in masked
    assert masked.count("****") == 4


def test_mask_text_leaves_ordinary_numbers() -> None:
    assert personnummer.mask_text("took 1234 ms, 20240101 rows") == "took 1234 ms, 20240101 rows"
