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


def rule_ceiling(df: pd.DataFrame) -> dict[str, float]:
    """The best pairwise recall (and F1, at precision 1) that any engine can reach while it keeps
    the issue's rule: two records that disagree on first name (not a typo, nickname or swap with
    the surname, Jaro-Winkler < 0.8) AND on birth date (another year, more than one typo) are
    never in one cluster. True pairs that disagree so are lost whatever the engine does, so this
    is an upper bound (the clusters must also be split somewhere). ``df`` needs entity,
    first_name, last_name, birth_date."""
    from rapidfuzz import process
    from rapidfuzz.distance import OSA, JaroWinkler

    from personalization_assets.identity.blocking import pairs_within_groups
    from personalization_assets.identity.nicknames import nickname_pairs

    ent = pd.factorize(df["entity"])[0].astype(np.int64)
    a, b, _ = pairs_within_groups(ent, max_block=10**9)
    if a.size == 0:
        return {"ceiling_recall": 1.0, "ceiling_f1": 1.0}
    low = lambda c: df[c].fillna("").astype(str).str.lower().str.strip().to_numpy(object)  # noqa: E731
    fn, ln = low("first_name"), low("last_name")
    bd = pd.Series(low("birth_date")).str.replace(r"[^0-9]", "", regex=True).to_numpy(object)
    sim = lambda x, y, scorer: process.cpdist(list(x), list(y), scorer=scorer, workers=-1)  # noqa: E731
    names = (fn[a] != "") & (fn[b] != "") & (sim(fn[a], fn[b], JaroWinkler.normalized_similarity) < 0.8) \
        & (sim(fn[a], fn[b], OSA.distance) > 1) & (sim(fn[a], ln[b], OSA.distance) > 1) \
        & (sim(ln[a], fn[b], OSA.distance) > 1)
    nick = nickname_pairs()
    names &= ~np.array([(min(x, y), max(x, y)) in nick for x, y in zip(fn[a], fn[b])], dtype=bool)
    year = lambda d: np.array([s[:4] for s in d], dtype=object)  # noqa: E731
    births = (bd[a] != "") & (bd[b] != "") & (year(bd[a]) != year(bd[b])) & (sim(bd[a], bd[b], OSA.distance) > 1)
    r = 1.0 - float((names & births).sum()) / a.size
    return {"ceiling_recall": r, "ceiling_f1": 2 * r / (1 + r)}
