"""The inbound benchmark's arithmetic: what adding up two apps' extra costs gives."""

from __future__ import annotations

import pytest

from bench.inbound import combined_ratio


def test_one_app_keeps_its_own_ratio_and_the_baseline_adds_nothing() -> None:
    assert combined_ratio(0.5) == pytest.approx(0.5)
    assert combined_ratio(0.8, 1.0) == pytest.approx(0.8)


def test_extra_costs_add_up() -> None:
    # Each at half the baseline's rate costs one baseline call more: together two more.
    assert combined_ratio(0.5, 0.5) == pytest.approx(1 / 3)
    # +insert at 0.51 and the contract work at 0.55 (bench/inbound.py, 2026-12-01, 10 conc.):
    # 1 + 0.96 + 0.82 baseline calls per call.
    assert combined_ratio(0.51, 0.55) == pytest.approx(0.36, abs=0.005)


def test_ratios_must_be_positive() -> None:
    with pytest.raises(ValueError):
        combined_ratio()
    with pytest.raises(ValueError):
        combined_ratio(0.5, 0.0)
