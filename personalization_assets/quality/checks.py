"""Pandera validation of a frame, summarized per (column, check) with a few failing values.

Plain Python: the asset check built on it is in `assets/checks.py`.
"""

from __future__ import annotations

import pandas as pd
import pandera.errors
import pandera.pandas as pa

MAX_EXAMPLES = 5


def summarize_failures(failure_cases: pd.DataFrame) -> list[dict]:
    """Per (column, check): count and up to five example failing values."""
    if failure_cases is None or failure_cases.empty:
        return []
    df = failure_cases.copy()
    df["column"] = df["column"].astype(str).where(df["column"].notna(), "<dataframe>")
    df["check"] = df["check"].astype(str)
    out = []
    for (column, check), group in df.groupby(["column", "check"], sort=True):
        examples = [None if pd.isna(v) else str(v)[:120] for v in group["failure_case"].head(MAX_EXAMPLES)]
        rows = [int(i) for i in group["index"].dropna().head(MAX_EXAMPLES)] if "index" in group else []
        out.append({"column": column, "check": check, "count": int(len(group)),
                    "examples": examples, "example_rows": rows})
    return out


def _nanosecond_times(df: pd.DataFrame) -> pd.DataFrame:
    """Warehouses hand back tz-aware times in µs and call UTC "Etc/UTC"; the models speak ns UTC.
    Naive or other-zone times are left alone (and fail): only spelling and resolution are forgiven."""
    aware = [c for c, t in df.dtypes.items()
             if isinstance(t, pd.DatetimeTZDtype) and (t.unit != "ns" or str(t.tz) in _UTC_ALIASES)]
    if not aware:
        return df
    return df.assign(**{c: df[c].dt.as_unit("ns").dt.tz_convert(
        "UTC" if str(df[c].dt.tz) in _UTC_ALIASES else df[c].dt.tz) for c in aware})


# DuckDB names UTC "Etc/UTC": the same zone, so it is not a violation.
_UTC_ALIASES = {"Etc/UTC", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu", "UCT", "Etc/UCT"}


def run_model(model: type[pa.DataFrameModel], df: pd.DataFrame) -> list[dict]:
    """Failure summary of `df` against `model` (empty when valid)."""
    return run_schema(model.to_schema(), df)


def run_schema(schema: pa.DataFrameSchema, df: pd.DataFrame) -> list[dict]:
    """Failure summary of `df` against `schema` (empty when valid). A table in the warehouse is
    validated a chunk at a time by `table_checks.validate_table`."""
    try:
        schema.validate(_nanosecond_times(df), lazy=True)
    except pandera.errors.SchemaErrors as exc:
        return summarize_failures(exc.failure_cases)
    return []
