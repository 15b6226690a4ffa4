"""resolve(): staging customer records -> golden records, crosswalk, evidence, review.

Full run: exact stage, blocking, vectorized comparison, EM-trained Fellegi–Sunter scores,
guarded clustering, stable keys, survivorship. Incremental run (a previous state with a
model is given and few records changed): only the blocks of new or changed records are
compared, and only the clusters they touch are clustered again (incremental.py); every other
cluster keeps its key, crosswalk, evidence and golden record as saved.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import pandas as pd

from personalization_assets.identity import incremental
from personalization_assets.identity.blocking import candidate_pairs
from personalization_assets.identity.changes import record_ids
from personalization_assets.identity.cluster import Edges, Rules, cluster
from personalization_assets.identity.compare import Comparator
from personalization_assets.identity.config import MatchConfig
from personalization_assets.identity.evidence import PairScorer
from personalization_assets.identity.exact import exact_edges
from personalization_assets.identity.fellegi_sunter import FSModel
from personalization_assets.identity.keys import assign_keys
from personalization_assets.identity.links import SOURCE_ID_PROB, Links, accepted_links, union_pairs
from personalization_assets.identity.memory import map_large_blocks
from personalization_assets.identity.output import (
    crosswalk_frame,
    evidence_frame,
    key_lookup,
    model_row,
    pair_evidence,
    review_frame,
    review_rows,
)
from personalization_assets.identity.prepare import Features, features
from personalization_assets.identity.scoring import matching_pairs
from personalization_assets.identity.state import Prepared, Resolution, ResolvedState
from personalization_assets.identity.survivorship import golden_records
from personalization_assets.identity.training import train

MANUAL_PROB = 3.0  # sorts above any probability when clusters are built
INCREMENTAL_MAX_FRACTION = 0.2
# candidate pairs whose full comparison feeds the prior estimate (all of them below this)
PRIOR_SAMPLE_PAIRS = 1_000_000


def resolve(records: pd.DataFrame, previous: ResolvedState | None = None,
            unmerges: Iterable[Iterable[str]] = (), config: MatchConfig | None = None,
            decisions: pd.DataFrame | None = None, model: FSModel | None = None) -> Resolution:
    """Resolve ``records`` (staging.customers rows). Each unmerge is a set of record ids to
    split off from the cluster they are in; the split is stored as cannot-link evidence, so
    later runs given this run's state keep it. ``decisions`` are a person's verdicts on pairs
    (left_record_id, right_record_id, decision 'link' | 'unlink'): they override the matcher
    on every run they are given to. ``model`` skips training on a full run (the incremental
    path always reuses the previous run's model)."""
    cfg, t0 = config or MatchConfig(), time.perf_counter()
    lap = _Laps()
    unmerges = [list(g) for g in unmerges]
    records = _dedupe(records)
    n, rid = len(records), record_ids(records)
    al = dirty = plan = None
    why = "no previous state with a model"
    if previous is not None and previous.model is not None and n:
        # prepare only new and changed records, from the previous run's prepared records
        plan = incremental.plan(records, previous, {r for g in unmerges for r in g}, decisions,
                                INCREMENTAL_MAX_FRACTION, cfg.max_block_size, cfg.max_key_group, cfg.block_window)
        why, plan = (plan, None) if isinstance(plan, str) else ("", plan)
    if plan is None:
        # a run over every record: its freed arrays leave the process (memory.py). Not for a plan's
        # run: its temporaries are small and its peak is the loaded state, and at a million records
        # mapping every array of 1 MB or more afresh cost ~0.5 s of system time in page faults
        map_large_blocks()
    rows = None  # positions of this run's records (rid, f) among ``records``; None: all of them
    if plan is not None:  # from here on rid and f are the plan's local records
        whole_records, n_all = records, n
        rows, rid, f, al, dirty = plan.local, rid[plan.local], plan.f, plan.al, plan.dirty
        n = len(rid)
    else:
        f = features(records)
        n_all = n
        if why == "no prepared records":  # every record prepared again, only the change compared
            al = incremental.align(previous, rid)
            named = incremental.unreflected(decisions, al) | {r for g in unmerges for r in g}
            dirty = incremental.dirty_rows(al, previous, f.record_hash, named)
            why = "full: more than a fifth of the records changed" if dirty.size > INCREMENTAL_MAX_FRACTION * n \
                else "incremental, every record prepared: the state holds no prepared records"
            if dirty.size > INCREMENTAL_MAX_FRACTION * n:
                al = dirty = None
        elif why == "full":
            why = "full: more than a fifth of the records changed"
    hashes = f.record_hash
    mode = "incremental" if dirty is not None else "full"
    why = why or "incremental: only new or changed records prepared"

    lap("features")
    placeholder = plan.placeholder if plan else _placeholder_profiles(f, cfg.max_key_group)
    ex, refused = exact_edges(plan.exact if plan else f, cfg.max_key_group)
    refused = plan.refused if plan else refused
    a, b, block_stats = candidate_pairs(f, cfg.max_block_size, only_rows=dirty, window=cfg.block_window,
                                        keys=plan.keys if plan else None, restricted=plan is not None)
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
        comp.fields = list(model.fields)  # a field missing from the local records is still the model's
    elif model is None:
        sample = _sample(a.size, PRIOR_SAMPLE_PAIRS, cfg.seed)
        model = train(f, comp, comp.levels(a[sample], b[sample]), a.size, cfg)
    lap("train")
    hit, hit_levels, _ = matching_pairs(comp, a, b, model, cfg.threshold)
    n_candidates = a.size
    scorer = PairScorer(comp, model, cfg.household_extra, f.codes["generation"], plan.tf_counts if plan else None)
    source_key = np.where(placeholder, -1, (plan.exact if plan else f).codes["source_key"])
    links, conflicts = accepted_links(scorer, a[hit].astype(np.int64), b[hit].astype(np.int64), hit_levels,
                                      cfg.threshold, source_key, cfg.max_key_group, only)
    del a, b
    lap("compare")

    # the records clustered this run: all, or the scope of the change
    if mode == "incremental":
        inside, scope_keys = incremental.scope(al, previous, dirty, links.left, links.right)
        kept, kept_conflicts = incremental.old_links(previous, al, scope_keys, only, scorer, cfg.threshold,
                                                     cfg.max_key_group)
        links = _concat_links(links, kept)
        conflicts = pd.concat([x for x in (conflicts, kept_conflicts) if len(x)] or [conflicts], ignore_index=True)
        prev_key = al.key
    else:
        inside, scope_keys = np.arange(n), set()
        prev_key = pd.Series(rid).map(previous.crosswalk.set_index("record_id")["customer_key"]).to_numpy(object) \
            if previous is not None else np.full(n, None, object)
    local = np.full(n, -1, np.int64)
    local[inside] = np.arange(inside.size)
    pos = pd.Series(np.arange(inside.size), index=rid[inside])
    forced_pairs, decided_cannot = _decisions(decisions, pos)
    edges, rules = _edges(links, local, forced_pairs)
    lap("score")
    cannot_ids = (previous.cannot_link() if previous is not None else set()) | decided_cannot
    sub = inside if mode == "incremental" else slice(None)
    cluster_rules = Rules(assess=lambda x, y: _verdict(scorer, inside[x], inside[y], cfg.threshold),
                          identities={k: (c[sub], lim) for k, (c, lim) in _identities(f, records, cfg, rows).items()},
                          forced=rules == "manual_link", undecidable=f.codes["birth"][sub] < 0)
    labels, review, used = cluster(inside.size, edges, cfg.strong_threshold, cfg.max_cluster_size,
                                   _positions(cannot_ids, pos), cluster_rules)
    new_cannot = _unmerge_pairs(unmerges, labels, pos, rid[inside])
    if new_cannot:
        cannot_ids |= new_cannot
        labels, review, used = cluster(inside.size, edges, cfg.strong_threshold, cfg.max_cluster_size,
                                       _positions(cannot_ids, pos), cluster_rules)
    review = _to_global(review, inside)
    review = pd.concat([x for x in (review, conflicts) if len(x)], ignore_index=True) if len(conflicts) else review
    review_evidence = pair_evidence(scorer, review["left"].to_numpy(np.int64), review["right"].to_numpy(np.int64))
    del comp, scorer
    lap("cluster")
    prev_series = pd.Series(prev_key[inside], index=rid[inside]).dropna()
    keys = prev_key.copy()
    keys[inside] = assign_keys(rid[inside], labels, prev_series if len(prev_series) else None)
    if plan is not None and incremental.key_clash(previous, plan, keys, inside):
        # rare: a new key of the scope is still held outside it; the path that prepares every record does it
        return resolve(whole_records, replace(previous, prepared=None), unmerges, config, decisions, model)
    if mode == "incremental" and _key_clash(keys, local):
        # rare: a new key of the scope is still held outside it; assign all keys as a full run would
        lab = np.where(local >= 0, labels[np.maximum(local, 0)], pd.factorize(prev_key)[0] + inside.size)
        keys = assign_keys(rid, lab, pd.Series(prev_key, index=rid).dropna())
    lap("keys")

    global_edges = Edges(inside[edges.left], inside[edges.right], edges.prob)
    crosswalk = crosswalk_frame(_rows(records, rows, inside) if mode == "incremental" else records, rid[inside],
                                keys[inside], hashes[inside], edges, rules, used,
                                _previous_rows(previous, al, inside))
    key_of = incremental.whole_key_lookup(plan, rid, keys) if plan \
        else key_lookup(rid, keys, al.index if al is not None else None)
    evidence = evidence_frame(rid, keys, global_edges, rules, used, links, model, cannot_ids, key_of)
    review_out = review_frame(review, rid, refused, plan.placeholder_ids if plan else rid[placeholder],
                              review_evidence)
    evidence = pd.concat([evidence, review_rows(review_out, key_of), _held_links(links, used, rid, keys)],
                         ignore_index=True)
    evidence = evidence.drop_duplicates(["left_record_id", "right_record_id", "rule"], keep="last", ignore_index=True)
    if mode == "incremental":  # the clusters outside the scope, as saved
        whole = plan.whole if plan else al
        is_in = np.zeros(n_all, bool)
        is_in[plan.local[inside] if plan else inside] = True
        kept_rows = incremental.carried_rows(whole, is_in)
        crosswalk = incremental.stack(incremental.carried_crosswalk(previous, whole, is_in), crosswalk)
        carried = incremental.carried_evidence(previous, whole, scope_keys, set(rid[dirty]))
        evidence = incremental.stack(carried, evidence)
        prepared = Prepared(incremental.prepared_table(f, inside, plan.hashes, plan.block_only(inside)),
                            base=previous.prepared,
                            keep=kept_rows) if plan \
            else Prepared(incremental.prepared_table(f, np.concatenate([whole.prev_pos[kept_rows], inside])))
    else:
        prepared = Prepared(incremental.prepared_table(f))
    del f
    if plan is not None:
        incremental.release(plan)
    evidence = pd.concat([evidence, model_row(model)], ignore_index=True)
    lap("outputs")
    if mode == "incremental" and previous.golden is not None:
        golden = _golden(_rows(records, rows, inside), keys[inside], cfg)
        golden = incremental.stack(incremental.carried_golden(previous.golden, scope_keys), golden)
    elif plan is not None:  # no saved golden records: all of them from the crosswalk's keys
        golden = _golden(whole_records, crosswalk.set_index("record_id")["customer_key"]
                         .reindex(whole_records["record_id"].astype(str)).to_numpy(object), cfg)
    else:
        golden = _golden(records, keys, cfg)
    lap("golden")
    stats = {"mode": mode, "mode_reason": why, "records": n_all, "prepared_records": plan.cleaned if plan else n_all,
             "candidate_pairs": int(n_candidates),
             "fuzzy_links": int((links.rule == "fuzzy").sum()), "exact_links": int((links.rule != "fuzzy").sum()),
             "refused_conflicts": len(conflicts), "customers": len(golden), "duplicates_merged": n_all - len(golden),
             "scored_records": int(dirty.size) if dirty is not None else n, "clustered_records": int(inside.size),
             "blocking": block_stats, "em_match_rate": model.match_rate,
             "seconds": round(time.perf_counter() - t0, 3), "stage_seconds": lap.laps}
    return Resolution(golden, crosswalk, evidence, review_out, model, stats, prepared)


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


def _golden(records: pd.DataFrame, keys: np.ndarray, cfg: MatchConfig) -> pd.DataFrame:
    golden = golden_records(records, pd.Series(keys), cfg.source_priority)
    golden["cluster_size"] = golden["source_records"]
    return golden


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _edges(links: Links, local: np.ndarray, forced: tuple[np.ndarray, np.ndarray]) -> tuple[Edges, np.ndarray]:
    """The links of the run (scored or carried over from the saved state) and a person's link
    decisions, in positions among the clustered records, and their rule."""
    left, right = local[links.left], local[links.right]
    if (left < 0).any() or (right < 0).any():
        raise AssertionError("a link reaches outside the records clustered in this run")
    edges = Edges(np.concatenate([left, forced[0]]).astype(np.int64),
                  np.concatenate([right, forced[1]]).astype(np.int64),
                  np.concatenate([links.prob, np.full(forced[0].size, MANUAL_PROB)]).astype(float))
    return edges, np.concatenate([links.rule, np.full(forced[0].size, "manual_link", object)])


def _concat_links(x: Links, y: Links) -> Links:
    """Both sets of links, ordered by pair as a full run orders them (ties in Kruskal follow it)."""
    cols = [np.concatenate([p, q]) for p, q in zip(_columns(x), _columns(y))]
    order = np.lexsort((cols[1], cols[0], cols[2] == SOURCE_ID_PROB))  # source-id links last, as in a full run
    return Links(*(c[order] for c in cols))


def _columns(x: Links) -> tuple:
    return (x.left, x.right, x.prob, x.rule, x.levels, x.weight, x.tf_adjustment, x.household_adjustment)


def _to_global(review: pd.DataFrame, inside: np.ndarray) -> pd.DataFrame:
    out = review.copy()
    out["left"] = inside[review["left"].to_numpy(np.int64)]
    right = review["right"].to_numpy(np.int64)
    out["right"] = np.where(right >= 0, inside[np.maximum(right, 0)], -1)
    return out


def _previous_rows(previous: ResolvedState | None, al, inside: np.ndarray) -> pd.DataFrame | None:
    """The previous crosswalk rows of the records clustered in this run."""
    if previous is None or al is None:
        return previous.crosswalk if previous is not None else None
    ok = al.prev_pos >= 0
    is_in = np.zeros(al.key.size, bool)
    is_in[inside] = True
    ok[ok] &= is_in[al.prev_pos[ok]]
    return previous.crosswalk.loc[ok]


def _held_links(links: Links, used: np.ndarray, rid: np.ndarray, keys: np.ndarray) -> pd.DataFrame:
    """Links the clustering left out (refused, or dropped around an ambiguous record), kept as
    evidence so that the next incremental run knows every link between the clusters it touches."""
    held = np.flatnonzero(~used[:len(links)])
    left, right = links.left[held], links.right[held]
    return pd.DataFrame({"left_record_id": rid[left], "right_record_id": rid[right], "customer_key": keys[left],
                         "rule": incremental.HELD, "match_probability": np.minimum(links.prob[held], 1.0)})


def _key_clash(keys: np.ndarray, local: np.ndarray) -> bool:
    inner = set(keys[local >= 0])
    return bool(pd.Series(keys[local < 0]).isin(inner).any())


def _verdict(scorer: PairScorer, a: np.ndarray, b: np.ndarray, threshold: float):
    s = scorer.assess(a, b)
    return s.conflict, (s.prob >= threshold) & ~s.conflict


def _rows(records: pd.DataFrame, rows: np.ndarray | None, at: np.ndarray) -> pd.DataFrame:
    """The rows of this run's records at positions ``at`` (``rows``: their positions in ``records``).
    A plan's run takes only the rows it outputs, never a copy of all its local records' rows."""
    return records.iloc[at if rows is None else rows[at]]


def _identities(f: Features, records: pd.DataFrame, cfg: MatchConfig,
                rows: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, int]]:
    """Per-record identifier codes for the identity limits, in the configured priority order
    (``rows``: the positions of f's records in ``records``, all by default)."""
    columns = {"email": "email", "phone": "phone"}
    out = {name: (f.codes[columns[name]], limit) for name, limit in cfg.identity_limits if name in columns}
    if cfg.unique_id_sources and "source" in records:
        source = (records["source"] if rows is None else records["source"].iloc[rows]).astype(str).to_numpy()
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
