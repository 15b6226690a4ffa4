"""The Pandera models in Dagster: blocking asset checks that report failure cases as metadata,
and the column schema the UI shows, derived from the same models so it is written once.

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
from ..schemas.tables import STAGING_MODELS

RAW_COLUMN_NOTE = "raw original, as the source sent it"

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


def table_schema(model: type[pa.DataFrameModel]) -> dg.TableSchema:
    """The Dagster column schema (UI) derived from a Pandera model, so it is written once."""
    columns = []
    for name, column in model.to_schema().columns.items():
        checks = [str(c.name) for c in column.checks]
        constraints = dg.TableColumnConstraints(
            nullable=bool(column.nullable), unique=bool(column.unique), other=checks
        )
        columns.append(dg.TableColumn(name=name, type=str(column.dtype), constraints=constraints))
    return dg.TableSchema(columns=columns)


def schema_metadata(table: str, frame: pd.DataFrame) -> dict:
    """The UI column schema: the table's Pandera model (written once, in schemas/), plus the other
    columns of the frame, each `<column>_raw` described as the raw original of `<column>`."""
    modelled = table_schema(STAGING_MODELS[table])
    known = {c.name for c in modelled.columns}
    extra = [dg.TableColumn(str(c), str(t), description=(
        f"{RAW_COLUMN_NOTE} (canonical form in `{str(c)[:-4]}`)" if str(c).endswith("_raw") else None))
        for c, t in frame.dtypes.items() if str(c) not in known]
    return {"dagster/column_schema": dg.TableSchema(columns=[*modelled.columns, *extra])}
