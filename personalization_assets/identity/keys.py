"""Stable customer keys.

A cluster keeps the key it had last run: each previous key goes to the new cluster holding
most of its records (ties: the one holding the key's oldest record id), and a cluster with
several inherited keys keeps the one backed by most records. A brand-new cluster gets a key
derived from its smallest record id, so re-running from scratch reproduces the same keys.
Unrelated arrivals therefore never change anyone's key.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def key_for(record_id: str) -> str:
    return "cus_" + hashlib.sha1(record_id.encode("utf-8")).hexdigest()[:16]


def assign_keys(record_ids: np.ndarray, labels: np.ndarray, previous: pd.Series | None) -> np.ndarray:
    """customer_key per record; ``previous`` maps record_id -> previous customer_key."""
    df = pd.DataFrame({"record_id": record_ids, "label": labels})
    df["prev"] = df["record_id"].map(previous) if previous is not None and len(previous) else None
    df = df.sort_values("record_id", kind="stable")  # so "first" below is the smallest id
    anchors = df.drop_duplicates("label").set_index("label")["record_id"]
    winner = pd.Series(dtype=object)
    keyed = df.dropna(subset=["prev"])
    if not keyed.empty:
        votes = keyed.groupby(["prev", "label"]).agg(n=("record_id", "size"), anchor=("record_id", "first"))
        votes = votes.reset_index().sort_values(["prev", "n", "anchor"], ascending=[True, False, True])
        votes = votes.drop_duplicates("prev").sort_values(["label", "n", "anchor"], ascending=[True, False, True])
        winner = votes.drop_duplicates("label").set_index("label")["prev"]
    taken = set(winner.tolist())
    todo = anchors[~anchors.index.isin(winner.index)]
    fresh = pd.Series([key_for(r) for r in todo.to_numpy()], index=todo.index, dtype=object)
    clash = fresh.isin(taken)
    for label in fresh.index[clash]:  # rare: the anchor's old key is still held elsewhere
        n = 1
        while (key := key_for(f"{anchors[label]}#{n}")) in taken:
            n += 1
        fresh[label] = key
    mapping = pd.concat([winner, fresh]) if len(winner) else fresh
    return df["label"].map(mapping).sort_index().to_numpy(object)
