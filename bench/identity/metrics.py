"""Pairwise precision / recall / F1 of a clustering against true entities, and blocking recall."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _pairs(sizes: pd.Series) -> float:
    return float((sizes * (sizes - 1) // 2).sum())


def pairwise(truth: pd.Series, clusters: pd.Series) -> dict[str, float]:
    """truth and clusters are indexed by record id; every pair inside a cluster is a prediction."""
    df = pd.DataFrame({"e": truth, "c": clusters.reindex(truth.index)})
    df["c"] = df["c"].fillna(pd.Series(df.index, index=df.index).map(lambda r: f"__single_{r}"))
    tp = _pairs(df.groupby(["c", "e"]).size())
    predicted, actual = _pairs(df.groupby("c").size()), _pairs(df.groupby("e").size())
    p = tp / predicted if predicted else 1.0
    r = tp / actual if actual else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


SPLINK_THRESHOLDS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999)


def best_threshold(truth: pd.Series, pairs: pd.DataFrame) -> dict[str, float]:
    """Splink's best pairwise F1 over thresholds chosen with the labels (what a tuned Splink
    reaches at best): connected components of the pairs at each threshold."""
    from personalization_assets.identity.cluster import components

    ids = pd.Index(truth.index)
    a, b = ids.get_indexer(pairs["rec_id_l"]), ids.get_indexer(pairs["rec_id_r"])
    prob = pairs["match_probability"].to_numpy(float)
    best = {"best_f1": 0.0}
    for t in SPLINK_THRESHOLDS:
        keep = prob >= t
        lab = pd.Series(components(ids.size, a[keep], b[keep]), index=ids)
        r = pairwise(truth, lab)
        if r["f1"] > best["best_f1"]:
            best = {"best_f1": r["f1"], "best_threshold": t, "best_precision": r["precision"],
                    "best_recall": r["recall"]}
    return best


def blocking_recall(df: pd.DataFrame) -> tuple[float, int]:
    """Share of true pairs that the exact stage or some blocking key puts together."""
    from personalization_assets.identity.blocking import candidate_pairs
    from personalization_assets.identity.cluster import components
    from personalization_assets.identity.config import MatchConfig
    from personalization_assets.identity.exact import exact_edges
    from personalization_assets.identity.prepare import features

    f = features(df)
    n = len(f)
    a, b, _ = candidate_pairs(f, MatchConfig().max_block_size, window=MatchConfig().block_window)
    a, b = a.astype(np.int64), b.astype(np.int64)
    ex, _ = exact_edges(f, MatchConfig().max_key_group)
    exact_lab = components(n, ex["left"].to_numpy(), ex["right"].to_numpy())
    ent = pd.factorize(df["entity"])[0]
    order = np.argsort(ent, kind="stable")
    # all true pairs, vectorized: reuse the block expander on entity codes
    from personalization_assets.identity.blocking import pairs_within_groups

    ta, tb, _ = pairs_within_groups(ent.astype(np.int64), max_block=10**9)
    del order
    found = np.isin(ta * n + tb, a * n + b) | (exact_lab[ta] == exact_lab[tb])
    return (float(found.mean()) if found.size else 1.0), int(a.size)
