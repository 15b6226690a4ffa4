"""Shape the crosswalk, merge-evidence and review tables of a run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from personalization_assets.identity.compare import LEVELS

RULE_RANK = {"exact:email_key": 0, "exact:phone": 1, "exact:source_id": 2, "fuzzy": 3, "carried": 4}
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
    fuzzy_p = ends.loc[ends["rule"] == "fuzzy"].groupby("row")["prob"].max()
    cw = pd.DataFrame({
        "record_id": rid,
        "customer_key": keys,
        "source": records["source"].to_numpy() if "source" in records else None,
        "rule": best["rule"].reindex(np.arange(rid.size)).fillna("singleton").to_numpy(object),
        "match_probability": fuzzy_p.reindex(np.arange(rid.size)).to_numpy(float),
        "record_hash": pd.Series(hashes).map("{:016x}".format).to_numpy(object),
    })
    if previous is not None and len(previous):
        prev = previous.set_index("record_id")
        carried = cw["rule"] == "carried"
        cw.loc[carried, "rule"] = cw.loc[carried, "record_id"].map(prev["rule"]).to_numpy()
        cw["previous_customer_key"] = cw["record_id"].map(prev["customer_key"]).astype("string")
    else:
        cw["previous_customer_key"] = pd.Series(pd.NA, index=cw.index, dtype="string")
    return cw


def evidence_frame(rid, keys, edges, rules, used, fuzzy_levels, model, fields, cannot) -> pd.DataFrame:
    """One row per link used in a cluster: the exact rule, or the per-field levels and weights."""
    n_exact = int(np.sum(np.char.startswith(rules.astype(str), "exact:"))) if rules.size else 0
    idx = np.flatnonzero(used & (rules != "carried"))
    ev = pd.DataFrame({
        "left_record_id": rid[edges.left[idx]],
        "right_record_id": rid[edges.right[idx]],
        "customer_key": keys[edges.left[idx]],
        "rule": rules[idx],
        "match_probability": np.minimum(edges.prob[idx], 1.0),
    })
    fz = idx[rules[idx] == "fuzzy"] - n_exact
    is_fz = (rules[idx] == "fuzzy")
    weights = model.field_weights(fuzzy_levels[fz]) if fz.size else np.zeros((0, len(fields)))
    ev["match_weight"] = np.nan
    if fz.size:
        ev.loc[is_fz, "match_weight"] = model.match_weight(fuzzy_levels[fz])
    for field in EVIDENCE_FIELDS:
        ev[field] = pd.Series(pd.NA, index=ev.index, dtype="string")
        ev[f"{field}_weight"] = np.nan
    for k, field in enumerate(fields):
        labels = np.asarray(LEVELS[field], dtype=object)
        ev.loc[is_fz, field] = labels[fuzzy_levels[fz, k]] if fz.size else []
        ev.loc[is_fz, f"{field}_weight"] = weights[:, k] if fz.size else []
    if cannot:
        cl = pd.DataFrame(sorted(cannot), columns=["left_record_id", "right_record_id"])
        cl["rule"], cl["match_probability"] = "cannot_link", 0.0
        pos = pd.Series(keys, index=rid)
        cl["customer_key"] = cl["left_record_id"].map(pos)
        ev = pd.concat([ev, cl], ignore_index=True)
    return ev


def model_row(model) -> pd.DataFrame:
    """The fitted weights travel with the evidence they explain (and seed incremental runs)."""
    return pd.DataFrame({"rule": ["model"], "match_probability": [model.match_rate],
                         "detail": [json.dumps(model.to_dict())]})


def review_frame(review: pd.DataFrame, rid, refused: pd.DataFrame, placeholders) -> pd.DataFrame:
    """Links and records held back for a person to look at, with the reason."""
    rv = pd.DataFrame({
        "left_record_id": rid[review["left"].to_numpy(int)] if len(review) else [],
        "right_record_id": [rid[r] if r >= 0 else None for r in review["right"].to_numpy(int)],
        "reason": review["reason"].to_numpy(object),
        "score": review["score"].to_numpy(float),
    })
    extra = [pd.DataFrame({"left_record_id": refused["example"], "right_record_id": None,
                           "reason": "shared_key:" + refused["rule"], "score": refused["records"]}),
             pd.DataFrame({"left_record_id": placeholders, "right_record_id": None,
                           "reason": "placeholder_profile", "score": np.nan})]
    extra = [x for x in extra if len(x)]
    return pd.concat([rv, *extra], ignore_index=True) if extra else rv
