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

from personalization_assets.identity.blocking import sorted_unique
from personalization_assets.identity.prepare import Features

RULES = ("email_key", "phone", "source_id")


def _guarded(key: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Key codes (-1 = none); a key seen with several first initials becomes one key per
    (key, initial), and none where the initial is missing."""
    key, initial = key.astype(np.int64), initial.astype(np.int64)
    width = int(initial.max(initial=0)) + 1
    seen = sorted_unique((key * width + initial)[(key >= 0) & (initial >= 0)]) // width
    shared = np.isin(key, seen[1:][seen[1:] == seen[:-1]])
    split = np.where(initial >= 0, int(key.max(initial=0)) + 1 + key * width + initial, -1)
    return np.where(shared, split, key)


def exact_keys(f: Features) -> dict[str, np.ndarray]:
    """Integer key codes per rule (-1 = no key)."""
    initial = f.codes["fn_init"]
    return {
        "email_key": _guarded(f.codes["email"], initial),
        "phone": _guarded(f.codes["phone"], initial),
        "source_id": f.codes["source_key"],
    }


def exact_edges(f: Features, max_group: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Edges (left, right, rule) joining every group member to the group's first record,
    plus the shared keys that were refused (for review)."""
    edges, refused = [], []
    for rule, key in exact_keys(f).items():
        codes = pd.factorize(key, use_na_sentinel=False)[0]
        codes[key < 0] = -1
        valid = np.flatnonzero(codes >= 0)
        if valid.size == 0:
            continue
        sizes = np.bincount(codes[valid])
        too_big = np.flatnonzero(sizes > max_group)
        for c in too_big:
            refused.append({"rule": rule, "records": int(sizes[c]),
                            "example": f.record_id[valid[codes[valid] == c][0]]})
        ok = valid[(sizes[codes[valid]] > 1) & (sizes[codes[valid]] <= max_group)]
        if ok.size == 0:
            continue
        order = ok[np.argsort(codes[ok], kind="stable")]
        sc = codes[order]
        starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
        first = np.repeat(order[starts], np.diff(np.r_[starts, sc.size]))
        mask = first != order
        edges.append(pd.DataFrame({"left": np.minimum(first[mask], order[mask]),
                                   "right": np.maximum(first[mask], order[mask]), "rule": rule}))
    e = pd.concat(edges, ignore_index=True) if edges else pd.DataFrame(
        {"left": pd.Series(dtype=np.int64), "right": pd.Series(dtype=np.int64), "rule": pd.Series(dtype=str)})
    e = e.drop_duplicates(["left", "right"])
    return e, pd.DataFrame(refused, columns=["rule", "records", "example"])
