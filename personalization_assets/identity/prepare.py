"""Turn staging customer rows into matching features.

Matching needs its own, harsher normal form than staging (no case, no accents, no
punctuation) and must turn placeholder values into nulls so they never act as evidence;
the text cleaning itself runs in DuckDB (features_sql.py). Non-Latin letters are kept.
"""

from __future__ import annotations

import jellyfish
import numpy as np
import pandas as pd

from personalization_assets.identity.features_sql import clean_frame
from personalization_assets.identity.nicknames import canonical_names


def on_uniques(s: pd.Series, fn) -> pd.Series:
    """Apply ``fn`` (str -> str | None) once per distinct value; returns a categorical, so later
    factorizing (blocking, comparison) reuses its integer codes instead of hashing text."""
    codes, uniq = pd.factorize(s, use_na_sentinel=True)
    res = [fn(str(u)) for u in uniq]
    res_codes, cats = pd.factorize(np.array(res, dtype=object), use_na_sentinel=True)
    final = np.where(codes >= 0, res_codes[np.maximum(codes, 0)] if len(res) else -1, -1)
    return pd.Series(pd.Categorical.from_codes(final, np.asarray(cats, dtype=object)), index=s.index)


def features(records: pd.DataFrame) -> pd.DataFrame:
    """One row per record, positional index, with the columns the matcher compares and blocks on
    (text as categoricals, pure keys as int32 codes with -1 for missing) and ``record_hash``."""
    f = pd.DataFrame({"record_id": records["record_id"].astype(str).to_numpy()})
    nick = canonical_names()
    for col, values in clean_frame(records).items():
        f[col] = values
    f["fn_canon"] = on_uniques(f["fn"], lambda v: nick.get(v, v)).array
    f["ln_sdx"] = on_uniques(f["ln"], jellyfish.soundex).array
    f["fn_sdx"] = on_uniques(f["fn"], jellyfish.soundex).array
    return f
