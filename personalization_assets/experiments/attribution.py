"""The attribution rule: which outcomes count for an experiment's member. One function, here.

Rule (intent-to-treat): a member's window opens at their FIRST exposure to the experiment, real or
ghost, and lasts `window`; every outcome of the same customer_key with exposed_at <= occurred_at <
exposed_at + window counts, in every experiment the customer is in (experiments are independent
randomizations). A member with no outcome counts as zeros, never as missing: dropping them would
compare buyers with buyers. Outcomes before the exposure never count, so a purchase that caused a
suppression cannot be credited to the email.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

OUTCOME_KINDS = ("order", "visit", "email_open", "email_click")
OUTCOME_COLUMNS = ["orders", "revenue_minor", "visits", "email_opens", "email_clicks", "converted"]
DEFAULT_WINDOW = timedelta(days=7)


def attribute_outcomes(exposures: pd.DataFrame, outcomes: pd.DataFrame,
                       window: timedelta = DEFAULT_WINDOW) -> pd.DataFrame:
    """exposures: experiment, customer_key, arm, exposed_at (any number per member);
    outcomes: customer_key, occurred_at, kind (one of OUTCOME_KINDS), value_minor (orders' revenue).
    Returns one row per (experiment, customer_key): arm, exposed_at, and OUTCOME_COLUMNS."""
    unknown = set(outcomes["kind"].unique()) - set(OUTCOME_KINDS) if len(outcomes) else set()
    if unknown:
        raise ValueError(f"outcome kinds {sorted(unknown)} are not attributable; expected {OUTCOME_KINDS}")
    first = (exposures.sort_values("exposed_at")
             .drop_duplicates(["experiment", "customer_key"], keep="first")
             [["experiment", "customer_key", "arm", "exposed_at"]].reset_index(drop=True))
    joined = first[["experiment", "customer_key", "exposed_at"]].merge(
        outcomes[["customer_key", "occurred_at", "kind", "value_minor"]], on="customer_key")
    inside = joined[(joined["occurred_at"] >= joined["exposed_at"])
                    & (joined["occurred_at"] < joined["exposed_at"] + pd.Timedelta(window))]
    value = inside["value_minor"].fillna(0)
    kind = inside["kind"]
    per = pd.DataFrame({
        "experiment": inside["experiment"], "customer_key": inside["customer_key"],
        "orders": (kind == "order").astype("int64"), "revenue_minor": value.where(kind == "order", 0).astype("int64"),
        "visits": (kind == "visit").astype("int64"), "email_opens": (kind == "email_open").astype("int64"),
        "email_clicks": (kind == "email_click").astype("int64"),
    }).groupby(["experiment", "customer_key"], sort=False).sum().reset_index()
    out = first.merge(per, on=["experiment", "customer_key"], how="left")
    for col in OUTCOME_COLUMNS[:-1]:
        out[col] = out[col].fillna(0).astype("int64")
    out["converted"] = (out["orders"] > 0).astype("int64")
    return out
