"""Countries as ISO 3166-1 alpha-2 codes, via pycountry and the synonym seed table.

Order of rules for one value (compared by ``match_key``: NFKC, trimmed, case-folded):
1. ``seeds/country_synonyms.csv``: a code, or an explicit unknown with its reason
   ("Channel Islands" is Jersey JE *and* Guernsey GG, so it is not one country);
2. an exact pycountry match on alpha-2, alpha-3, numeric code, name, official or common name.
No fuzzy matching: an unknown value stays unknown ("unknown: <raw>") rather than becoming a
wrong country.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pandas as pd
import pycountry

from ._seeds import read_seed
from ._unique import apply_unique, to_frame
from .text import key_one

COLUMNS = ["country", "country_issue"]


@cache
def synonyms() -> dict[str, tuple[str | None, str | None]]:
    """match_key(raw) -> (alpha-2 or None, reason when None)."""
    table = read_seed("country_synonyms.csv")
    return {key_one(r.raw): (r.alpha2 or None, None if r.alpha2 else (r.note or f"unknown: {r.raw}"))
            for r in table.itertuples()}


@cache
def _iso_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for country in pycountry.countries:
        for attr in ("alpha_2", "alpha_3", "numeric", "name", "official_name", "common_name"):
            value = getattr(country, attr, None)
            if value:
                names[key_one(value)] = country.alpha_2
    return names


def _country_one(value: Any) -> tuple[str | None, str | None]:
    key = key_one(value)
    if key is None:
        return None, "missing"
    if key in synonyms():
        return synonyms()[key]
    code = _iso_names().get(key)
    return (code, None) if code else (None, f"unknown: {str(value).strip()[:80]}")


def normalize_countries(s: pd.Series) -> pd.DataFrame:
    """Columns ``country`` (ISO 3166-1 alpha-2 or None) and ``country_issue``, aligned with ``s``."""
    codes, results = apply_unique(s, _country_one)
    return to_frame(codes, results, dict.fromkeys(COLUMNS), s.index)
