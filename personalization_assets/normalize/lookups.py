"""Lookup tables: raw spellings of order statuses, product categories and event names -> one code.

Each table is a versioned CSV seed (``seeds/<name>.csv``, columns ``version, raw, code``); every
canonical code also maps to itself, so mapping is idempotent. Raw values are compared by
``match_key`` (NFKC, trimmed, case-folded), so "Delivered" and " DELIVERED " are one spelling.
An unmapped value gives ``value`` None and ``unmapped`` True: callers report it, never pass it on
silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import pandas as pd

from ._seeds import read_seed
from ._unique import apply_unique, to_frame
from .text import key_one

LOOKUPS = ("order_statuses", "product_categories", "event_names")


@dataclass(frozen=True)
class Lookup:
    name: str
    version: str
    frame: pd.DataFrame  # the seed as stored: version, raw, code
    mapping: dict[str, str]  # match_key(raw) -> code

    @property
    def codes(self) -> list[str]:
        return sorted(set(self.mapping.values()))


@cache
def load_lookup(name: str) -> Lookup:
    """The seed table ``name`` (one of LOOKUPS). Raises ValueError on conflicts or mixed versions."""
    if name not in LOOKUPS:
        raise ValueError(f"unknown lookup {name!r}; expected one of {', '.join(LOOKUPS)}")
    frame = read_seed(f"{name}.csv")
    versions = sorted(set(frame["version"]))
    if len(versions) != 1:
        raise ValueError(f"seeds/{name}.csv mixes versions {versions}; one table has one version")
    mapping: dict[str, str] = {}
    for raw, code in zip(frame["raw"], frame["code"]):
        key = key_one(raw)
        if mapping.setdefault(key, code) != code:
            raise ValueError(f"seeds/{name}.csv maps {raw!r} to both {mapping[key]!r} and {code!r}")
    return Lookup(name=name, version=versions[0], frame=frame, mapping=mapping)


def map_lookup(s: pd.Series, lookup_name: str) -> pd.DataFrame:
    """Columns ``value`` (canonical code or None) and ``unmapped`` (bool; False for missing cells)."""
    mapping = load_lookup(lookup_name).mapping

    def one(value: Any) -> tuple[str | None, bool]:
        key = key_one(value)
        if key is None:
            return None, False
        code = mapping.get(key)
        return code, code is None

    codes, results = apply_unique(s, one)
    return to_frame(codes, results, {"value": None, "unmapped": "bool"}, s.index)
