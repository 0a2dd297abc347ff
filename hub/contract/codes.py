"""SNOMED CT code lists of the contract (docs/contract.md), kept as configuration."""

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final


@dataclass(frozen=True)
class CodeLists:
    """The codes accepted in each coded element."""

    exclusion_reasons: frozenset[str]
    followup_types: frozenset[str]
    hpv_positive: frozenset[str]
    hpv_negative: frozenset[str]

    @property
    def hpv_values(self) -> frozenset[str]:
        """Every code allowed in ``HPVstatusList/value``."""
        return self.hpv_positive | self.hpv_negative


DEFAULT_CODE_LISTS_PATH: Final = Path(__file__).with_name("codelists.toml")


def load_code_lists(path: Path = DEFAULT_CODE_LISTS_PATH) -> CodeLists:
    """Read code lists from a TOML file with one array of strings per :class:`CodeLists` field.

    Raises ValueError naming the key if a list is missing, empty or not all strings, so a bad
    configuration stops the hub at start-up rather than rejecting every message later.
    """
    with path.open("rb") as f:
        data = tomllib.load(f)
    values: dict[str, frozenset[str]] = {}
    for fld in fields(CodeLists):
        raw = data.get(fld.name)
        if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
            raise ValueError(f"{path.name}: {fld.name} must be a non-empty list of strings")
        values[fld.name] = frozenset(c.strip() for c in raw)
    unknown = set(data) - set(values)
    if unknown:
        raise ValueError(f"{path.name}: unknown keys {sorted(unknown)}")
    lists = CodeLists(**values)
    if lists.hpv_positive & lists.hpv_negative:
        raise ValueError(f"{path.name}: a code cannot be both HPV positive and HPV negative")
    return lists


#: The shipped code lists (``codelists.toml``, the one place they are written down).
DEFAULT_CODE_LISTS: Final = load_code_lists(DEFAULT_CODE_LISTS_PATH)
