"""Apply a per-value function once per distinct value (or pair) of columns, then broadcast back.

Real columns repeat values (countries, currencies, statuses), so normalizing each distinct value
once is where most of the speed comes from; the output columns are built at the level of the
distinct values and expanded with one vectorized ``take``. Missing cells (None/NaN/NaT) share
one slot, the last, holding ``fn(None)``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import pandas as pd


def _hashable(value: Any) -> Hashable:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


class _ObjectMarker:
    """Appended to a column to make pandas hash its values as Python objects (see ``factorize``)."""


def _unencodable(values: np.ndarray) -> bool:
    """Whether pandas would use its string hash table (all cells str, none missing) on strings
    UTF-8 cannot encode."""
    if pd.api.types.infer_dtype(values, skipna=False) != "string":
        return False
    try:
        "".join(values).encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def factorize(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1 for missing) and the distinct values of ``s``; unhashable cells become their repr.

    Values that compare equal share a code (1, 1.0 and True are one value to pandas).
    pandas' string hash table (used when every value is a str) merges strings holding lone
    surrogates ("\\ud800" and "x\\ud800" get one code, pandas 2.3); such columns are hashed as
    Python objects instead.
    """
    values = s.to_numpy(dtype=object, na_value=None)
    if _unencodable(values):
        codes, uniques = pd.factorize(np.append(values, _ObjectMarker()), use_na_sentinel=True)
        return codes[:-1], np.asarray(uniques[:-1], dtype=object)
    try:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    except TypeError:
        codes, uniques = pd.factorize(np.array([_hashable(v) for v in values], dtype=object))
    return codes, np.asarray(uniques, dtype=object)


def apply_unique(s: pd.Series, fn: Callable[[Any], Any]) -> tuple[np.ndarray, list]:
    """Codes into ``results``, where ``results[i] = fn(distinct value i)`` and the last is ``fn(None)``."""
    codes, uniques = factorize(s)
    return codes, [fn(v) for v in uniques] + [fn(None)]


def apply_unique_pairs(a: pd.Series, b: pd.Series, fn: Callable[[Any, Any], Any]) -> tuple[np.ndarray, list]:
    """Like ``apply_unique`` over the distinct (a, b) pairs (a missing cell passes None)."""
    codes_a, uniques_a = factorize(a)
    codes_b, uniques_b = factorize(b)
    width = len(uniques_b) + 1
    pair = (codes_a.astype(np.int64) + 1) * width + (codes_b.astype(np.int64) + 1)
    codes, pairs = pd.factorize(pair)
    values_a = np.append(uniques_a, None)  # position -1 -> None
    values_b = np.append(uniques_b, None)
    return codes, [fn(values_a[p // width - 1], values_b[p % width - 1]) for p in pairs]


def _column(values: list, dtype: str | None, codes: np.ndarray):
    if dtype is None:
        table = np.empty(len(values), dtype=object)
        table[:] = values
        return table[codes]
    return pd.array(values, dtype=dtype).take(codes)


def to_series(codes: np.ndarray, results: list, index: pd.Index, *, name=None, dtype: str | None = None) -> pd.Series:
    return pd.Series(_column(results, dtype, codes), index=index, name=name)


def to_frame(codes: np.ndarray, results: list[tuple], columns: dict[str, str | None], index: pd.Index) -> pd.DataFrame:
    """One column per tuple position; ``columns`` maps its name to a pandas dtype (None: object)."""
    transposed = list(zip(*results)) if results else [()] * len(columns)
    if not len(codes):
        return pd.DataFrame({name: pd.Series([], dtype=dtype or object) for name, dtype in columns.items()},
                            index=index)
    return pd.DataFrame({name: _column(list(values), dtype, codes)
                         for (name, dtype), values in zip(columns.items(), transposed)}, index=index)


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
