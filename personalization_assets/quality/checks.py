"""Pandera model -> blocking Dagster asset check, reporting failure cases as metadata."""

from __future__ import annotations

import json
from typing import Any, Callable

import dagster as dg
import pandas as pd
import pandera.errors
import pandera.pandas as pa

from ..privacy import mask_value

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
    try:
        model.validate(_nanosecond_times(df), lazy=True)
    except pandera.errors.SchemaErrors as exc:
        return summarize_failures(exc.failure_cases)
    return []


# (check context, warehouse resource) -> the rows the run wrote
RowsWritten = Callable[[dg.AssetCheckExecutionContext, Any], pd.DataFrame]


def pandera_asset_check(
    asset_key, model: type[pa.DataFrameModel], blocking: bool = True, pool: str | None = None,
    rows_written: RowsWritten | None = None,
) -> dg.AssetChecksDefinition:
    """An asset check running `model.validate(lazy=True)` on the loaded asset value (loading it
    opens the warehouse: pass the writers' `pool` where the store allows one process at a time).

    With `rows_written`, the check validates only what that function reads through the `warehouse`
    resource (a partitioned asset's batch), so its cost follows the run, not the table."""
    key = dg.AssetKey.from_coercible(asset_key)
    check_name = f"pandera_{model.__name__}"
    description = f"Pandera model {model.__name__} (lazy validation)"

    if rows_written is not None:
        @dg.asset_check(asset=key, name=check_name, blocking=blocking, pool=pool, description=description
                        + " of the rows the run wrote", required_resource_keys={"warehouse"})
        def _batch_check(context) -> dg.AssetCheckResult:  # AssetCheckExecutionContext
            return _result(model, rows_written(context, context.resources.warehouse))

        return _batch_check

    @dg.asset_check(asset=key, name=check_name, blocking=blocking, pool=pool, description=description)
    def _check(asset_value: pd.DataFrame) -> dg.AssetCheckResult:
        return _result(model, asset_value)

    return _check


def _result(model: type[pa.DataFrameModel], asset_value: pd.DataFrame) -> dg.AssetCheckResult:
    failures = [{**f, "examples": [mask_value(f["column"], e) for e in f["examples"]]}  # kept for good
                for f in run_model(model, asset_value)]
    metadata = {
        "rows": dg.MetadataValue.int(int(len(asset_value))),
        "failed_checks": dg.MetadataValue.int(len(failures)),
        "failed_cases": dg.MetadataValue.int(sum(f["count"] for f in failures)),
    }
    if failures:
        metadata["failures"] = dg.MetadataValue.json(failures)
        table = "\n".join(f"| {f['column']} | {f['check']} | {f['count']} | {json.dumps(f['examples'])} |"
                          for f in failures)
        metadata["failures_table"] = dg.MetadataValue.md(
            "| column | check | count | examples |\n|---|---|---|---|\n" + table)
    return dg.AssetCheckResult(passed=not failures, severity=dg.AssetCheckSeverity.ERROR,
                               metadata=metadata)
