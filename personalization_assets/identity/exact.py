"""Exact stage: records sharing a trusted key are the same person.

Keys: the normalized email matching key, the E.164 phone, and a source's own customer id.
Guards: placeholder values are nulled upstream (prepare.py); a key shared by more than
``max_key_group`` records is treated as shared (family inbox, switchboard) and never used;
an email or phone shared by people with different first initials only links within each
initial (a household phone joins nobody across family members).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RULES = ("email_key", "phone", "source_id")


def _guarded(key: pd.Series, initial: pd.Series) -> pd.Series:
    key, initial = key.astype("string"), initial.astype("string")
    frame = pd.DataFrame({"k": key, "i": initial})
    mixed = frame.dropna().groupby("k")["i"].nunique() > 1
    shared = key.isin(mixed[mixed].index)
    return key.where(~shared, key + "|" + initial)  # null initial -> null key


def exact_keys(f: pd.DataFrame) -> dict[str, pd.Series]:
    initial = f["fn"].str[:1]
    return {
        "email_key": _guarded(f["email"], initial),
        "phone": _guarded(f["phone"], initial),
        "source_id": (f["source"] + "|" + f["source_id"]),
    }


def exact_edges(f: pd.DataFrame, max_group: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Edges (left, right, rule) joining every group member to the group's first record,
    plus the shared keys that were refused (for review)."""
    edges, refused = [], []
    for rule, key in exact_keys(f).items():
        codes = pd.factorize(key, use_na_sentinel=True)[0]
        valid = np.flatnonzero(codes >= 0)
        if valid.size == 0:
            continue
        sizes = np.bincount(codes[valid])
        too_big = np.flatnonzero(sizes > max_group)
        for c in too_big:
            refused.append({"rule": rule, "records": int(sizes[c]),
                            "example": f["record_id"].iloc[valid[codes[valid] == c][0]]})
        ok = valid[(sizes[codes[valid]] > 1) & (sizes[codes[valid]] <= max_group)]
        if ok.size == 0:
            continue
        order = ok[np.argsort(codes[ok], kind="stable")]
        first = pd.Series(order).groupby(codes[order]).transform("first").to_numpy()
        mask = first != order
        edges.append(pd.DataFrame({"left": np.minimum(first[mask], order[mask]),
                                   "right": np.maximum(first[mask], order[mask]), "rule": rule}))
    e = pd.concat(edges, ignore_index=True) if edges else pd.DataFrame(
        {"left": pd.Series(dtype=np.int64), "right": pd.Series(dtype=np.int64), "rule": pd.Series(dtype=str)})
    e = e.drop_duplicates(["left", "right"])
    return e, pd.DataFrame(refused, columns=["rule", "records", "example"])
