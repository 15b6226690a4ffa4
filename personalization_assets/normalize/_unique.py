"""Apply a per-value function once per distinct value of a column, then broadcast it back.

Real columns repeat values (countries, currencies, statuses), so normalizing each distinct value
once is where most of the speed comes from. Missing values (None/NaN/NaT) share one slot.
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


def factorize(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1 for missing) and the distinct values of ``s``; unhashable cells become their repr."""
    values = s.to_numpy(dtype=object, na_value=None)
    try:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    except TypeError:
        codes, uniques = pd.factorize(np.array([_hashable(v) for v in values], dtype=object))
    return codes, np.asarray(uniques, dtype=object)


def map_unique(s: pd.Series, fn: Callable[[Any], Any]) -> list:
    """``[fn(v) for v in s]`` computed once per distinct value; ``fn(None)`` for missing cells.

    Values that compare equal share one result (1, 1.0 and True are one value to pandas).
    """
    codes, uniques = factorize(s)
    results = [fn(v) for v in uniques] + [fn(None)]
    table = np.empty(len(results), dtype=object)
    table[:] = results
    return table[codes].tolist()


def map_unique_pairs(a: pd.Series, b: pd.Series, fn: Callable[[Any, Any], Any]) -> list:
    """``[fn(x, y) for x, y in zip(a, b)]`` computed once per distinct pair."""
    codes_a, uniques_a = factorize(a)
    codes_b, uniques_b = factorize(b)
    width = len(uniques_b) + 1
    pair = (codes_a.astype(np.int64) + 1) * width + (codes_b.astype(np.int64) + 1)
    codes, pairs = pd.factorize(pair)
    values_a = np.append(uniques_a, None)  # index -1 -> None
    values_b = np.append(uniques_b, None)
    results = np.empty(len(pairs), dtype=object)
    results[:] = [fn(values_a[p // width - 1], values_b[p % width - 1]) for p in pairs]
    return results[codes].tolist()


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
