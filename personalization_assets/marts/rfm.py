"""RFM: quintile scores for recency, frequency and monetary value, and a named segment.

Scores are quintiles over the scored population (5 = best). Ties are broken by rank so each
quintile holds a fifth of the customers, even in the heavily tied frequency column. Names follow
the widely used R x F grid (Champions, Loyal, At risk, Hibernating, ...), so the email team can
read them without a legend.
"""

from __future__ import annotations

import re

import pandas as pd

# (regex over the two-digit "<r><f>" score, name). First match wins.
SEGMENT_GRID: tuple[tuple[str, str], ...] = (
    (r"[1-2][1-2]", "hibernating"),
    (r"[1-2][3-4]", "at_risk"),
    (r"[1-2]5", "cant_lose_them"),
    (r"3[1-2]", "about_to_sleep"),
    (r"33", "need_attention"),
    (r"[3-4][4-5]", "loyal_customers"),
    (r"41", "promising"),
    (r"51", "new_customers"),
    (r"[4-5][2-3]", "potential_loyalists"),
    (r"5[4-5]", "champions"),
)
SEGMENT_NAMES = tuple(name for _, name in SEGMENT_GRID)


def quintile(values: pd.Series, higher_is_better: bool = True) -> pd.Series:
    """1..5 by rank; the order of equal values is their order in the frame (stable)."""
    if values.empty:
        return pd.Series([], dtype="Int64", index=values.index)
    ranks = values.rank(method="first", ascending=higher_is_better)
    scores = ((ranks - 1) * 5 // len(values)) + 1
    return scores.astype("Int64")


def segment_name(r_score: int, f_score: int) -> str:
    code = f"{int(r_score)}{int(f_score)}"
    for pattern, name in SEGMENT_GRID:
        if re.fullmatch(pattern, code):
            return name
    raise ValueError(f"RFM scores out of range 1..5: r={r_score}, f={f_score}")


def score(frame: pd.DataFrame, recency: str = "recency_days", frequency: str = "frequency",
          monetary: str = "monetary") -> pd.DataFrame:
    """Add r_score, f_score, m_score, rfm_score ("543") and rfm_segment to buyers.

    Customers without an order (recency NULL) are not scored: an RFM score of 1 would
    wrongly call a brand-new subscriber "hibernating".
    """
    out = frame.copy()
    buyers = out[recency].notna()
    sub = out.loc[buyers]
    out["r_score"] = pd.Series(pd.NA, index=out.index, dtype="Int64")
    out["f_score"] = out["r_score"].copy()
    out["m_score"] = out["r_score"].copy()
    out.loc[buyers, "r_score"] = quintile(sub[recency], higher_is_better=False)
    out.loc[buyers, "f_score"] = quintile(sub[frequency])
    out.loc[buyers, "m_score"] = quintile(sub[monetary])
    codes = out.loc[buyers, ["r_score", "f_score", "m_score"]].astype(int).astype(str)
    out["rfm_score"] = pd.Series(None, index=out.index, dtype="object")
    out.loc[buyers, "rfm_score"] = codes["r_score"] + codes["f_score"] + codes["m_score"]
    names = {f"{r}{f}": segment_name(r, f) for r in range(1, 6) for f in range(1, 6)}
    out["rfm_segment"] = (out["r_score"].astype("string") + out["f_score"].astype("string")).map(names)
    out["rfm_segment"] = out["rfm_segment"].where(buyers, "no_orders").astype(object)
    return out
