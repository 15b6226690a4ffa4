"""Exact keys: records sharing an e-mail, a phone or a source's own customer id.

A shared identifier is evidence, not a verdict: a family mailbox, a landline or an office
switchboard is shared by different people. So the exact stage only *proposes* pairs; each is
scored like any other pair (where the identifier's agreement counts, term-frequency adjusted)
and refused when the two records conflict (see evidence.py). Guards: placeholder values are
nulled upstream (prepare.py); a key shared by more than ``max_key_group`` records identifies
nobody and is reported instead of used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalization_assets.identity.blocking import pairs_within_groups
from personalization_assets.identity.prepare import Features

RULES = ("email_key", "phone", "source_id")


def exact_keys(f: Features) -> dict[str, np.ndarray]:
    """Integer key codes per rule (-1 = no key)."""
    return {"email_key": f.codes["email"], "phone": f.codes["phone"], "source_id": f.codes["source_key"]}


def exact_edges(f: Features, max_group: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every pair (left < right) sharing a key of a group of at most ``max_group`` records, with
    the first rule that proposed it, plus the shared keys that were refused (for review)."""
    edges, refused = [], []
    for rule, key in exact_keys(f).items():
        key = key.astype(np.int64)
        valid = key[key >= 0]
        if valid.size == 0:
            continue
        sizes = np.bincount(valid)
        for c in np.flatnonzero(sizes > max_group):
            refused.append({"rule": rule, "records": int(sizes[c]),
                            "example": f.record_id[np.flatnonzero(key == c)[0]]})
        a, b, _ = pairs_within_groups(key, max_group)
        edges.append(pd.DataFrame({"left": a, "right": b, "rule": rule}))
    e = pd.concat(edges, ignore_index=True) if edges else pd.DataFrame(
        {"left": pd.Series(dtype=np.int64), "right": pd.Series(dtype=np.int64), "rule": pd.Series(dtype=str)})
    e = e.drop_duplicates(["left", "right"], ignore_index=True)
    return e, pd.DataFrame(refused, columns=["rule", "records", "example"])
