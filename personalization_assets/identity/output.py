"""Shape the crosswalk, merge-evidence and review tables of a run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from personalization_assets.identity.changes import hex_hashes
from personalization_assets.identity.compare import LEVELS

RULE_RANK = {"manual_link": 0, "exact:email_key": 1, "exact:phone": 2, "exact:source_id": 3, "fuzzy": 4,
             "carried": 5}
EVIDENCE_FIELDS = tuple(LEVELS)


def crosswalk_frame(records, rid, keys, hashes, edges, rules, used, previous) -> pd.DataFrame:
    """record_id -> customer_key, with the strongest rule that joined the record."""
    idx = np.flatnonzero(used)
    ends = pd.DataFrame({
        "row": np.concatenate([edges.left[idx], edges.right[idx]]),
        "rule": np.concatenate([rules[idx], rules[idx]]),
        "prob": np.concatenate([edges.prob[idx], edges.prob[idx]]),
    })
    ends["rank"] = ends["rule"].map(RULE_RANK)
    best = ends.sort_values(["row", "rank", "prob"], ascending=[True, True, False]).drop_duplicates("row")
    best = best.set_index("row")
    scored = ~ends["rule"].isin(["carried", "manual_link"])
    match_p = ends.loc[scored, "prob"].clip(upper=1.0).groupby(ends.loc[scored, "row"]).max()
    cw = pd.DataFrame({
        "record_id": rid,
        "customer_key": keys,
        "source": records["source"].to_numpy() if "source" in records else None,
        "rule": best["rule"].reindex(np.arange(rid.size)).fillna("singleton").to_numpy(object),
        "match_probability": match_p.reindex(np.arange(rid.size)).to_numpy(float),
        "record_hash": hex16(hashes),
    })
    if previous is not None and len(previous):
        prev = previous.set_index("record_id")
        carried = cw["rule"] == "carried"
        cw.loc[carried, "rule"] = cw.loc[carried, "record_id"].map(prev["rule"]).to_numpy()
        if "match_probability" in prev:  # a record carried over keeps the evidence it was merged on
            lost = carried & cw["match_probability"].isna()
            cw.loc[lost, "match_probability"] = cw.loc[lost, "record_id"].map(prev["match_probability"]).to_numpy(float)
        cw["previous_customer_key"] = cw["record_id"].map(prev["customer_key"]).astype("string")
    else:
        cw["previous_customer_key"] = pd.Series(pd.NA, index=cw.index, dtype="string")
    return cw


def hex16(values: np.ndarray) -> np.ndarray:
    """uint64 values as 16 lower-case hex digits ("{:016x}") in Python strings, from
    `changes.hex_hashes` (no Python int per value: a million temporary ints fragment the heap)."""
    return hex_hashes(np.asarray(values, np.uint64)).astype("U16").astype(object)


def evidence_frame(rid, keys, edges, rules, used, links, model, cannot, key_of=None) -> pd.DataFrame:
    """One row per link used in a cluster: its rule, its per-field levels and weights, and the
    adjustments (term frequency, household) that made its final weight. ``key_of(record ids)``
    gives their customer keys (by default looked up in rid/keys)."""
    idx = np.flatnonzero(used & (rules != "carried"))
    ev = pd.DataFrame({
        "left_record_id": rid[edges.left[idx]],
        "right_record_id": rid[edges.right[idx]],
        "customer_key": keys[edges.left[idx]],
        "rule": rules[idx],
        "match_probability": np.minimum(edges.prob[idx], 1.0),
    })
    scored = idx < len(links)  # links come first among the edges; carried and manual have no levels
    li = idx[scored]
    fields = model.fields
    ev["match_weight"] = np.nan
    ev["tf_adjustment"] = np.nan
    ev["household_adjustment"] = np.nan
    if li.size:
        ev.loc[scored, "match_weight"] = links.weight[li]
        ev.loc[scored, "tf_adjustment"] = links.tf_adjustment[li]
        ev.loc[scored, "household_adjustment"] = links.household_adjustment[li]
    weights = model.field_weights(links.levels[li]) if li.size else np.zeros((0, len(fields)))
    for field in EVIDENCE_FIELDS:
        ev[field] = pd.Series(pd.NA, index=ev.index, dtype="string")
        ev[f"{field}_weight"] = np.nan
    for k, field in enumerate(fields):
        labels = np.asarray(LEVELS[field], dtype=object)
        if li.size:
            ev.loc[scored, field] = labels[links.levels[li, k]]
            ev.loc[scored, f"{field}_weight"] = weights[:, k]
    if cannot:
        cl = pd.DataFrame(sorted(cannot), columns=["left_record_id", "right_record_id"])
        cl["rule"], cl["match_probability"] = "cannot_link", 0.0
        cl["customer_key"] = (key_of or key_lookup(rid, keys))(cl["left_record_id"].to_numpy(object))
        ev = pd.concat([ev, cl], ignore_index=True)
    return ev


def model_row(model) -> pd.DataFrame:
    """The fitted weights travel with the evidence they explain (and seed incremental runs)."""
    return pd.DataFrame({"rule": ["model"], "match_probability": [model.match_rate],
                         "detail": [json.dumps(model.to_dict())]})


PAIR_REVIEW_COLUMNS = ["left_record_id", "right_record_id", "reason", "score", "evidence"]


def pair_evidence(scorer, left: np.ndarray, right: np.ndarray) -> list[str | None]:
    """Per pair, a JSON object of its field levels and the adjustments of its weight."""
    out: list[str | None] = [None] * left.size
    pairs = np.flatnonzero(right >= 0)
    if pairs.size == 0:
        return out
    s = scorer.assess(left[pairs], right[pairs])
    fields = scorer.model.fields
    for j, i in enumerate(pairs):
        detail = {f: LEVELS[f][s.levels[j, k]] for k, f in enumerate(fields)}
        detail.update(match_weight=round(float(s.weight[j]), 3), match_probability=round(float(s.prob[j]), 6),
                      tf_adjustment=round(float(s.tf_adjustment[j]), 3),
                      household_adjustment=round(float(s.household_adjustment[j]), 3), conflict=bool(s.conflict[j]))
        out[i] = json.dumps(detail)
    return out


def review_frame(review: pd.DataFrame, rid, refused: pd.DataFrame, placeholders, evidence=None) -> pd.DataFrame:
    """Links and records held back for a person to look at: the pair, its evidence, the reason."""
    rv = pd.DataFrame({
        "left_record_id": rid[review["left"].to_numpy(int)] if len(review) else [],
        "right_record_id": [rid[r] if r >= 0 else None for r in review["right"].to_numpy(int)],
        "reason": review["reason"].to_numpy(object),
        "score": review["score"].to_numpy(float),
        "evidence": evidence if evidence is not None else [None] * len(review),
    })
    extra = [pd.DataFrame({"left_record_id": refused["example"], "right_record_id": None,
                           "reason": "shared_key:" + refused["rule"], "score": refused["records"],
                           "evidence": None}),
             pd.DataFrame({"left_record_id": placeholders, "right_record_id": None,
                           "reason": "placeholder_profile", "score": np.nan, "evidence": None})]
    extra = [x for x in extra if len(x)]
    out = pd.concat([rv, *extra], ignore_index=True) if extra else rv
    return out[PAIR_REVIEW_COLUMNS]


def key_lookup(rid, keys, index: pd.Index | None = None):
    """record ids -> their customer keys (None for an unknown id); ``index`` is pd.Index(rid) if built."""
    index = index if index is not None else pd.Index(rid)

    def key_of(ids) -> np.ndarray:
        pos = index.get_indexer(ids)
        return np.where(pos >= 0, keys[np.maximum(pos, 0)], None) if keys.size else np.full(len(pos), None)
    return key_of


def review_rows(review: pd.DataFrame, key_of) -> pd.DataFrame:
    """The review queue as evidence rows (rule ``review:<reason>``), so it is written with the
    resolution it belongs to and ``core.identity_review`` can be read from it."""
    return pd.DataFrame({"left_record_id": review["left_record_id"], "right_record_id": review["right_record_id"],
                         "customer_key": key_of(review["left_record_id"].to_numpy(object)),
                         "rule": "review:" + review["reason"],
                         "match_probability": review["score"], "detail": review["evidence"]})
