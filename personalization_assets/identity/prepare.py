"""Turn staging customer rows into matching features.

Matching needs its own, harsher normal form than staging (no case, no accents, no
punctuation) and must turn placeholder values into nulls so they never act as evidence;
the text cleaning itself runs in DuckDB (features_sql.py). Non-Latin letters are kept.
"""

from __future__ import annotations

import re

import jellyfish
import numpy as np
import pandas as pd

from personalization_assets.identity.features_sql import clean_frame
from personalization_assets.identity.nicknames import canonical_names

MATCH_COLUMNS = ("record_id", "source", "source_id", "first_name", "last_name", "email_key",
                 "phone", "street", "city", "postcode", "birth_date", "country", "updated_at")
OPTIONAL_COLUMNS = ("national_id",)


def on_uniques(s: pd.Series, fn) -> pd.Series:
    """Apply ``fn`` (str -> str | None) once per distinct value; returns a categorical, so later
    factorizing (blocking, comparison) reuses its integer codes instead of hashing text."""
    codes, uniq = pd.factorize(s, use_na_sentinel=True)
    res = [fn(str(u)) for u in uniq]
    res_codes, cats = pd.factorize(np.array(res, dtype=object), use_na_sentinel=True)
    final = np.where(codes >= 0, res_codes[np.maximum(codes, 0)] if len(res) else -1, -1)
    return pd.Series(pd.Categorical.from_codes(final, np.asarray(cats, dtype=object)), index=s.index)


_NOT_WORD = re.compile(r"[\W_]+")


def email_local(v: str) -> str | None:
    return _NOT_WORD.sub("", v.rpartition("@")[0]) or None


def features(records: pd.DataFrame) -> pd.DataFrame:
    """One row per record, positional index, with the columns the matcher compares and blocks on."""
    get = lambda c: records[c] if c in records else pd.Series(pd.NA, index=records.index)  # noqa: E731
    f = pd.DataFrame({"record_id": records["record_id"].astype(str).to_numpy()})
    f["source"] = get("source").astype("string").to_numpy()
    f["source_id"] = get("source_id").astype("string").to_numpy()
    nick = canonical_names()
    for col, values in clean_frame(records).items():
        f[col] = values
    f["fn_canon"] = on_uniques(f["fn"], lambda v: nick.get(v, v)).array
    f["email_local"] = on_uniques(f["email"], email_local).array
    f["ln_sdx"] = on_uniques(f["ln"], jellyfish.soundex).array
    f["fn_sdx"] = on_uniques(f["fn"], jellyfish.soundex).array
    f["updated_at"] = pd.to_datetime(get("updated_at"), utc=True, errors="coerce").array
    return f


def record_hash(records: pd.DataFrame) -> np.ndarray:
    """Content hash of the matching columns, to detect changed records between runs."""
    cols = [c for c in MATCH_COLUMNS + OPTIONAL_COLUMNS if c in records and c != "updated_at"]
    return pd.util.hash_pandas_object(records[cols], index=False, categorize=True).to_numpy()
