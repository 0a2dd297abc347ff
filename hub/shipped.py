"""Folders that ship with the hub: the contract (``wsdl/``), the migrations, the demo regions.

They stay at the top of the repository (the product's layout); a built wheel carries copies
inside the package, under ``hub/_shipped/`` (``pyproject.toml``, hatchling's force-include).
An installed wheel finds those copies; a source checkout or an editable install finds the
repository's own folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Shipped = Literal["wsdl", "migrations", "regions"]

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: Shipped) -> Path:
    """The folder ``name``: the wheel's copy if this is an installed wheel, else the checkout's."""
    inside = _PACKAGE / "_shipped" / name
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / name
