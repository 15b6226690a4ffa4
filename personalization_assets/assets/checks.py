"""The Pandera models in Dagster: blocking asset checks that report failure cases as metadata.

The validation itself is plain Python in `quality/checks.py`; this is its Dagster shell.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ..privacy import mask_value
from ..quality.checks import run_model

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
