"""Turn staging customer rows into matching features.

Matching needs its own, harsher normal form than staging (no case, no accents, no
punctuation) and must turn placeholder values into nulls so they never act as evidence;
the text cleaning itself runs in DuckDB (features_sql.py). Non-Latin letters are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import jellyfish
import numpy as np
import pandas as pd
import pyarrow as pa

from personalization_assets.identity.features_sql import clean_frame
from personalization_assets.identity.nicknames import canonical_names


@dataclass
class Features:
    """The matching view of a set of records, one position per record: int32 codes of each
    feature column (-1 = missing), the distinct values behind the codes of the text columns,
    record ids and content hashes. Codes, not strings, so a million records stay compact."""

    codes: dict[str, np.ndarray]
    values: dict[str, pa.Array]
    record_id: np.ndarray
    record_hash: np.ndarray

    def __len__(self) -> int:
        return self.record_id.size

    def text(self, col: str) -> np.ndarray:
        """The column decoded to strings (None where missing), for inspection and tests."""
        values = np.asarray(self.values[col].to_pylist() + [None], dtype=object)
        return values[self.codes[col]]  # code -1 picks the trailing None


def on_values(codes: np.ndarray, values: pa.Array, fn) -> tuple[np.ndarray, pa.Array]:
    """Apply ``fn`` (str -> str | None) once per distinct value: codes and values of the result."""
    res_codes, uniq = pd.factorize(np.array([fn(v) for v in values.to_pylist()], dtype=object),
                                   use_na_sentinel=True)
    new = np.where(codes >= 0, res_codes[np.maximum(codes, 0)], -1) if res_codes.size \
        else np.full(codes.size, -1)
    return new.astype(np.int32), pa.array(np.asarray(uniq, dtype=object), type=pa.string())


def features(records: pd.DataFrame) -> Features:
    """The comparable and blockable columns of ``records`` (positional)."""
    codes, values, record_hash = clean_frame(records)
    f = Features(codes, values, records["record_id"].astype(str).to_numpy(), record_hash)
    nick = canonical_names()
    for name, source, fn in (("fn_canon", "fn", lambda v: nick.get(v, v)), ("ln_sdx", "ln", jellyfish.soundex),
                             ("fn_sdx", "fn", jellyfish.soundex)):
        f.codes[name], f.values[name] = on_values(codes[source], values[source], fn)
    return f
