"""The review queue: pairs and records the matcher would not decide alone, with a person's
decision where there is one.

Reasons: ``conflict`` (the pair scored as a match but the records disagree on one of first name,
birth date or Jr/Sr: twins, a father and son, or a bad typo; pairs that disagree on several are
plainly two people and are not queued), ``weak_chain`` (a weak link that would have joined
groups), ``limit:<identity>`` (a merge would break an identity limit), ``cluster_too_large``,
``shared_key:<key>`` (an identifier shared by too many records to mean anything) and
``placeholder_profile``. Decide a pair with ``personalization identity link|unlink A B --reason``.
"""

from __future__ import annotations

import pandas as pd

REVIEW_COLUMNS = ["left_record_id", "right_record_id", "reason", "score", "evidence", "left_customer_key",
                  "right_customer_key", "status", "decision", "decision_reason", "decided_by"]


def review_queue(evidence: pd.DataFrame, crosswalk: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """One row per review case of the last resolution; ``status`` is ``decided`` when a person's
    decision covers the pair (and the run obeyed it), else ``open``."""
    if evidence is None or evidence.empty or "rule" not in evidence:
        return pd.DataFrame(columns=REVIEW_COLUMNS)
    rv = evidence[evidence["rule"].astype(str).str.startswith("review:")]
    key = crosswalk.set_index("record_id")["customer_key"] if len(crosswalk) else pd.Series(dtype=object)
    out = pd.DataFrame({
        "left_record_id": rv["left_record_id"].astype("string"),
        "right_record_id": rv["right_record_id"].astype("string"),
        "reason": rv["rule"].str.removeprefix("review:"),
        "score": pd.to_numeric(rv["match_probability"], errors="coerce"),
        "evidence": (rv["detail"] if "detail" in rv else pd.Series(pd.NA, index=rv.index)).astype("string"),
    }).reset_index(drop=True)
    out["left_customer_key"] = out["left_record_id"].map(key).astype("string")
    out["right_customer_key"] = out["right_record_id"].map(key).astype("string")
    lo = out[["left_record_id", "right_record_id"]].min(axis=1)
    hi = out[["left_record_id", "right_record_id"]].max(axis=1)
    d = decisions.set_index(["left_record_id", "right_record_id"]) if len(decisions) else None
    idx = pd.MultiIndex.from_arrays([lo.fillna(""), hi.fillna("")])
    for col, src in (("decision", "decision"), ("decision_reason", "reason"), ("decided_by", "decided_by")):
        out[col] = (d[src].reindex(idx).to_numpy() if d is not None else None)
        out[col] = out[col].astype("string")
    out["status"] = out["decision"].notna().map({True: "decided", False: "open"})
    return out[REVIEW_COLUMNS]
