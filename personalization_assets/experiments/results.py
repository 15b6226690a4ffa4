"""Per-arm results of one experiment: what `personalization lift` prints and `marts.experiment_results` holds."""

from __future__ import annotations

import math

import pandas as pd

from .stats import METHOD, ArmStats, Lift, grouped_arm_stats, welch_lift


class ResultsError(ValueError):
    """The input cannot give results (missing column or control arm, non-numeric outcome)."""


def _number(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def lift_entry(mean: float, lift: Lift | None) -> dict:
    """An arm's mean and its lift vs the control (None for the control, or where undefined)."""
    def field(name: str) -> float | None:
        value = getattr(lift, name) if lift is not None else None
        return None if value is None else _number(value)
    return {"mean": float(mean), **{name: field(name) for name in ("lift", "ci_low", "ci_high", "relative_lift",
                                                                    "p_value")}}


def numeric_outcomes(df: pd.DataFrame, outcomes: list[str], where: str = "the input") -> pd.DataFrame:
    """The outcome columns as floats; a value that is not a number is an error naming its row."""
    out = df.copy()
    for name in outcomes:
        if name not in df.columns:
            raise ResultsError(f"outcome column {name!r} is not in {where} (columns: {', '.join(map(str, df.columns))})")
        raw = df[name]
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() & raw.notna() | raw.isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ResultsError(f"outcome {name!r} in {where} has {int(bad.sum())} value(s) that are not numbers, "
                               f"first at data row {row + 1}: {raw.iloc[row]!r}; fix or drop those rows")
        out[name] = values.astype(float)
    return out


def arm_results(df: pd.DataFrame, arm_column: str, control: str, outcomes: list[str],
                where: str = "the input") -> dict:
    """{"arms": [...], "method": ...} with the control arm first, then the others in sorted order.

    Arms are compared as text, so "No E-Mail" or "0" match whatever type the file held.
    """
    if arm_column not in df.columns:
        raise ResultsError(f"arm column {arm_column!r} is not in {where} (columns: {', '.join(map(str, df.columns))})")
    empty = df[arm_column].isna() | (df[arm_column].astype(str).str.strip() == "")
    if empty.any():
        row = int(empty.to_numpy().nonzero()[0][0])
        raise ResultsError(f"arm column {arm_column!r} in {where} is empty in {int(empty.sum())} row(s), first at data "
                           f"row {row + 1}: every row needs its arm; fix or drop those rows")
    df = numeric_outcomes(df, outcomes, where)
    df[arm_column] = df[arm_column].astype(str)
    arms = sorted(df[arm_column].unique())
    if control not in arms:
        raise ResultsError(f"control value {control!r} is not an arm of {arm_column!r} in {where} "
                           f"(arms: {', '.join(map(repr, arms))})")
    order = [control] + [a for a in arms if a != control]
    per_outcome = {name: grouped_arm_stats(df, arm_column, name) for name in outcomes}
    result = []
    for arm in order:
        entry = {"arm": arm, "n": int(per_outcome[outcomes[0]].loc[arm, "n"]) if outcomes else int((df[arm_column] == arm).sum()),
                 "outcomes": {}}
        for name, table in per_outcome.items():
            row, base = table.loc[arm], table.loc[control]
            lift = None if arm == control else welch_lift(ArmStats(int(row["n"]), row["mean"], row["var"]),
                                                          ArmStats(int(base["n"]), base["mean"], base["var"]))
            entry["outcomes"][name] = lift_entry(row["mean"], lift)
        result.append(entry)
    return {"arms": result, "method": f"{METHOD}: absolute lift vs control with a 95% Welch CI "
                                      "(Welch-Satterthwaite df), two-sided p-value; relative lift = mean/control - 1"}
