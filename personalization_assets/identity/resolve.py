"""resolve(): staging customer records -> golden records, crosswalk, evidence, review.

Full run: exact stage, blocking, vectorized comparison, EM-trained Fellegi–Sunter scores,
guarded clustering, stable keys, survivorship. Incremental run (a previous state with a
model is given and few records changed): only pairs touching new/changed records and the
clusters they were in are scored; every other cluster is carried over as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import pandas as pd

from personalization_assets.identity.blocking import candidate_pairs
from personalization_assets.identity.cluster import Edges, Rules, cluster
from personalization_assets.identity.compare import Comparator
from personalization_assets.identity.config import MatchConfig
from personalization_assets.identity.evidence import PairScorer
from personalization_assets.identity.exact import exact_edges
from personalization_assets.identity.links import Links, accepted_links, union_pairs
from personalization_assets.identity.keys import assign_keys
from personalization_assets.identity.output import (
    crosswalk_frame,
    evidence_frame,
    model_row,
    pair_evidence,
    review_frame,
    review_rows,
)
from personalization_assets.identity.prepare import Features, features
from personalization_assets.identity.scoring import matching_pairs
from personalization_assets.identity.state import Resolution, ResolvedState
from personalization_assets.identity.survivorship import golden_records
from personalization_assets.identity.training import train

MANUAL_PROB, CARRIED_PROB = 3.0, 1.5  # sort above any probability when clusters are built
INCREMENTAL_MAX_FRACTION = 0.2
# candidate pairs whose full comparison feeds the prior estimate (all of them below this)
PRIOR_SAMPLE_PAIRS = 1_000_000


def resolve(records: pd.DataFrame, previous: ResolvedState | None = None,
            unmerges: Iterable[Iterable[str]] = (), config: MatchConfig | None = None,
            decisions: pd.DataFrame | None = None) -> Resolution:
    """Resolve ``records`` (staging.customers rows). Each unmerge is a set of record ids to
    split off from the cluster they are in; the split is stored as cannot-link evidence, so
    later runs given this run's state keep it. ``decisions`` are a person's verdicts on pairs
    (left_record_id, right_record_id, decision 'link' | 'unlink'): they override the matcher
    on every run they are given to."""
    cfg, t0 = config or MatchConfig(), time.perf_counter()
    lap = _Laps()
    records = _dedupe(records)
    n, rid = len(records), records["record_id"].astype(str).to_numpy()
    f = features(records)
    hashes = f.record_hash
    prev_keys = previous.crosswalk.set_index("record_id")["customer_key"] if previous is not None else None
    dirty = _dirty_rows(rid, hashes, previous) if previous is not None and previous.model is not None else None
    if dirty is not None and dirty.size > INCREMENTAL_MAX_FRACTION * n:
        dirty = None
    mode = "incremental" if dirty is not None else "full"

    lap("features")
    placeholder = _placeholder_profiles(f, cfg.max_key_group)
    ex, refused = exact_edges(f, cfg.max_key_group)
    a, b, block_stats = candidate_pairs(f, cfg.max_block_size, only_rows=dirty, window=cfg.block_window)
    only = None
    if dirty is not None:
        only = np.zeros(n, bool)
        only[dirty] = True
        ex = ex[only[ex["left"].to_numpy()] | only[ex["right"].to_numpy()]]
    # a shared identifier proposes a pair; the pair is scored like any other
    a, b = union_pairs(a, b, ex["left"].to_numpy(), ex["right"].to_numpy(), max(n, 1))
    if placeholder.any():
        ok = ~(placeholder[a] | placeholder[b])
        a, b = a[ok], b[ok]
    lap("blocking")
    comp = Comparator(f)
    if mode == "incremental":
        model = previous.model
    else:
        sample = _sample(a.size, PRIOR_SAMPLE_PAIRS, cfg.seed)
        model = train(f, comp, comp.levels(a[sample], b[sample]), a.size, cfg)
    lap("train")
    hit, hit_levels, _ = matching_pairs(comp, a, b, model, cfg.threshold)
    n_candidates = a.size
    scorer = PairScorer(comp, model, cfg.household_extra, f.codes["generation"])
    source_key = np.where(placeholder, -1, f.codes["source_key"])
    links, conflicts = accepted_links(scorer, a[hit].astype(np.int64), b[hit].astype(np.int64), hit_levels,
                                      cfg.threshold, source_key, cfg.max_key_group, only)
    del a, b
    lap("compare")

    pos = pd.Series(np.arange(n), index=rid)
    forced_pairs, decided_cannot = _decisions(decisions, pos)
    edges, rules = _edges(links, rid, dirty, prev_keys, forced_pairs)
    lap("score")
    cannot_ids = (previous.cannot_link() if previous is not None else set()) | decided_cannot
    cluster_rules = Rules(assess=lambda x, y: _verdict(scorer, x, y, cfg.threshold),
                          identities=_identities(f, records, cfg),
                          forced=rules == "manual_link", trusted=rules == "carried",
                          undecidable=f.codes["birth"] < 0)
    labels, review, used = cluster(n, edges, cfg.strong_threshold, cfg.max_cluster_size,
                                   _positions(cannot_ids, pos), cluster_rules)
    new_cannot = _unmerge_pairs(unmerges, labels, pos, rid)
    if new_cannot:
        cannot_ids |= new_cannot
        labels, review, used = cluster(n, edges, cfg.strong_threshold, cfg.max_cluster_size,
                                       _positions(cannot_ids, pos), cluster_rules)
    review = pd.concat([x for x in (review, conflicts) if len(x)], ignore_index=True) if len(conflicts) else review
    review_evidence = pair_evidence(scorer, review["left"].to_numpy(np.int64), review["right"].to_numpy(np.int64))
    del f, comp, scorer
    lap("cluster")
    keys = assign_keys(rid, labels, prev_keys)

    crosswalk = crosswalk_frame(records, rid, keys, hashes, edges, rules, used,
                                previous.crosswalk if previous is not None else None)
    evidence = evidence_frame(rid, keys, edges, rules, used, links, model, cannot_ids)
    if mode == "incremental":
        evidence = _carry_evidence(previous.evidence, evidence, set(rid[dirty]), set(rid))
    review_out = review_frame(review, rid, refused, rid[placeholder], review_evidence)
    evidence = pd.concat([evidence, review_rows(review_out, keys, rid)], ignore_index=True)
    evidence = evidence.drop_duplicates(["left_record_id", "right_record_id", "rule"], keep="last", ignore_index=True)
    evidence = pd.concat([evidence, model_row(model)], ignore_index=True)
    lap("outputs")
    golden = golden_records(records, pd.Series(keys), cfg.source_priority)
    golden["cluster_size"] = golden["source_records"]
    lap("golden")
    stats = {"mode": mode, "records": n, "candidate_pairs": int(n_candidates),
             "fuzzy_links": int((links.rule == "fuzzy").sum()), "exact_links": int((links.rule != "fuzzy").sum()),
             "refused_conflicts": len(conflicts), "customers": len(golden), "duplicates_merged": n - len(golden),
             "scored_records": int(dirty.size) if dirty is not None else n, "blocking": block_stats,
             "em_match_rate": model.match_rate, "seconds": round(time.perf_counter() - t0, 3),
             "stage_seconds": lap.laps}
    return Resolution(golden, crosswalk, evidence,
                      review_out, model, stats)


class _Laps:
    """Seconds spent per stage, for the run's metadata and the benchmark."""

    def __init__(self):
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._t, 3)
        self._t = now


def _dedupe(records: pd.DataFrame) -> pd.DataFrame:
    """One row per record_id (the latest), so reprocessing never duplicates a record.
    Without duplicates the frame is used as it is (no copy of a million rows)."""
    if not records["record_id"].duplicated().any():
        return records if isinstance(records.index, pd.RangeIndex) and records.index.start == 0 \
            and records.index.step == 1 else records.reset_index(drop=True)
    r = records.reset_index(drop=True)
    if "updated_at" in r:
        r = r.sort_values("updated_at", kind="stable", na_position="first")
    return r.drop_duplicates("record_id", keep="last").reset_index(drop=True)


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _dirty_rows(rid: np.ndarray, hashes: np.ndarray, previous: ResolvedState) -> np.ndarray:
    """New or changed records, plus every record of a cluster that lost or changed a member."""
    prev = previous.crosswalk.set_index("record_id")
    old_hash = pd.Series(rid).map(prev["record_hash"]).to_numpy(object)
    changed = old_hash != pd.Series(hashes).map("{:016x}".format).to_numpy(object)
    gone = prev.index.difference(pd.Index(rid))
    touched = set(prev["customer_key"].reindex(rid[changed]).dropna()) | set(prev.loc[gone, "customer_key"])
    in_touched = pd.Series(rid).map(prev["customer_key"]).isin(touched).to_numpy()
    return np.flatnonzero(changed | in_touched)


def _edges(links: Links, rid, dirty, prev_keys, forced: tuple[np.ndarray, np.ndarray]) -> tuple[Edges, np.ndarray]:
    """All links of the run (scored, carried over, decided by a person) and their rule."""
    parts = [(links.left, links.right, links.prob)]
    rules = [links.rule]
    if dirty is not None:
        carried = _carried_edges(rid, dirty, prev_keys)
        parts.append(carried)
        rules.append(np.full(carried[0].size, "carried", object))
    parts.append((forced[0], forced[1], np.full(forced[0].size, MANUAL_PROB)))
    rules.append(np.full(forced[0].size, "manual_link", object))
    left, right, prob = (np.concatenate(x) for x in zip(*parts))
    return Edges(left.astype(np.int64), right.astype(np.int64), prob.astype(float)), np.concatenate(rules)


def _verdict(scorer: PairScorer, a: np.ndarray, b: np.ndarray, threshold: float):
    s = scorer.assess(a, b)
    return s.conflict, (s.prob >= threshold) & ~s.conflict


def _identities(f: Features, records: pd.DataFrame, cfg: MatchConfig) -> dict[str, tuple[np.ndarray, int]]:
    """Per-record identifier codes for the identity limits, in the configured priority order."""
    columns = {"email": "email", "phone": "phone"}
    out = {name: (f.codes[columns[name]], limit) for name, limit in cfg.identity_limits if name in columns}
    if cfg.unique_id_sources and "source" in records:
        source = records["source"].astype(str).to_numpy()
        for src in cfg.unique_id_sources:
            out[f"source_id:{src}"] = (np.where(source == src, f.codes["source_key"], -1), 1)
    return out


def _decisions(decisions: pd.DataFrame | None, pos: pd.Series):
    """A person's link decisions as forced edges (positions), unlink decisions as cannot-links."""
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    if decisions is None or decisions.empty:
        return empty, set()
    d = decisions.drop_duplicates(["left_record_id", "right_record_id"], keep="last")
    known = d["left_record_id"].isin(pos.index) & d["right_record_id"].isin(pos.index)
    d = d[known]
    link = d[d["decision"] == "link"]
    unlink = d[d["decision"] == "unlink"]
    forced = (pos[link["left_record_id"]].to_numpy(np.int64), pos[link["right_record_id"]].to_numpy(np.int64))
    return forced, set(zip(unlink["left_record_id"], unlink["right_record_id"]))


def _carried_edges(rid, dirty, prev_keys):
    """Star edges that keep every untouched previous cluster together as it was."""
    clean = np.setdiff1d(np.arange(rid.size), dirty)
    key = pd.Series(rid[clean]).map(prev_keys).to_numpy(object)
    first = pd.Series(clean).groupby(key).transform("first").to_numpy()
    m = first != clean
    return first[m], clean[m], np.full(int(m.sum()), CARRIED_PROB)


def _carry_evidence(old: pd.DataFrame, new: pd.DataFrame, dirty_ids: set, live_ids: set) -> pd.DataFrame:
    # evidence and review cases of untouched records stay as they were (a case about one
    # record has no right side)
    right_ok = old["right_record_id"].isin(live_ids) | (old["right_record_id"].isna()
                                                        & old["rule"].astype(str).str.startswith("review:"))
    keep = old.loc[~old["rule"].isin(["cannot_link", "model"]) & ~old["left_record_id"].isin(dirty_ids)
                   & ~old["right_record_id"].isin(dirty_ids) & old["left_record_id"].isin(live_ids) & right_ok]
    new = new.loc[new["rule"] != "carried"]
    both = pd.concat([keep.astype(new.dtypes.to_dict(), errors="ignore"), new], ignore_index=True)
    # The exact stage re-derives its links every run: a link found again replaces the kept copy.
    return both.drop_duplicates(["left_record_id", "right_record_id", "rule"], keep="last", ignore_index=True)


def _placeholder_profiles(f: Features, max_group: int) -> np.ndarray:
    """Records whose whole matching profile repeats more than max_group times identify nobody."""
    cols = ["fn", "ln", "birth", "street", "city", "postcode", "email", "phone", "national_id"]
    h = pd.util.hash_pandas_object(pd.DataFrame({c: f.codes[c] for c in cols}), index=False)
    return (h.map(h.value_counts()) > max_group).to_numpy()


def _positions(pairs: set[tuple[str, str]], pos: pd.Series) -> set[tuple[int, int]]:
    return {(int(pos[x]), int(pos[y])) for x, y in pairs if x in pos.index and y in pos.index}


def _unmerge_pairs(unmerges, labels, pos, rid) -> set[tuple[str, str]]:
    out = set()
    for group in unmerges:
        ids = {g for g in group if g in pos.index}
        for lab in {labels[pos[g]] for g in ids}:
            members = set(rid[labels == lab])
            out |= {(x, y) for x in ids & members for y in members - ids}
    return out
