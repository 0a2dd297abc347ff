"""Code lists as configuration."""

from pathlib import Path

import pytest

from hub.contract.codes import load_code_lists


def test_load_code_lists_reads_a_custom_file(tmp_path: Path) -> None:
    path = tmp_path / "codes.toml"
    path.write_text(
        'exclusion_reasons = ["1"]\nfollowup_types = ["2"]\n'
        'hpv_positive = ["3", "4"]\nhpv_negative = ["5"]\n'
    )
    lists = load_code_lists(path)
    assert lists.exclusion_reasons == {"1"}
    assert lists.hpv_values == {"3", "4", "5"}


_GOOD = {
    "exclusion_reasons": '["1"]',
    "followup_types": '["2"]',
    "hpv_positive": '["3"]',
    "hpv_negative": '["5"]',
}


@pytest.mark.parametrize(
    "change",
    [
        {"hpv_negative": None},  # missing
        {"exclusion_reasons": "[]"},  # empty
        {"exclusion_reasons": "[1]"},  # not strings
        {"hpv_negative": '["3"]'},  # both positive and negative
        {"surprise": '["6"]'},  # unknown key
    ],
)
def test_load_code_lists_refuses_bad_configuration(
    tmp_path: Path, change: dict[str, str | None]
) -> None:
    entries = {**_GOOD, **change}
    path = tmp_path / "codes.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in entries.items() if v is not None))
    with pytest.raises(ValueError, match=r"codes\.toml"):
        load_code_lists(path)
