"""The Pandera models in Dagster: blocking asset checks that report failure cases as metadata,
and the column schema the UI shows, derived from the same models so it is written once.

The validation itself is plain Python in `quality/checks.py`; this is its Dagster shell.
"""

from __future__ import annotations

import json
from typing import Callable

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ..privacy import mask_value
from ..quality.checks import run_model
from ..quality.table_checks import CHUNK_ROWS, validate_table
from ..schemas.tables import STAGING_MODELS
from ..warehouse import identifier

RAW_COLUMN_NOTE = "raw original, as the source sent it"

# (check context) -> the SQL condition selecting the rows the run wrote, and its bound values
RowsWritten = Callable[[dg.AssetCheckExecutionContext], tuple[str, list]]


def pandera_asset_check(
    asset_key, model: type[pa.DataFrameModel], blocking: bool = True, pool: str | None = None,
    in_warehouse: bool = False, rows_written: RowsWritten | None = None, chunk_rows: int = CHUNK_ROWS,
) -> dg.AssetChecksDefinition:
    """An asset check validating the asset against `model` (lazy: every failure is reported).

    `in_warehouse`: the check reads the table `<layer>.<name>` of the asset key through the
    `warehouse` resource, `chunk_rows` rows and only the model's columns at a time, and runs the
    uniqueness rules as SQL (`quality/table_checks.py`): its memory follows the chunk, not the
    table. `rows_written` (implies it) narrows that to the rows the run wrote (a partitioned
    asset's days, a micro-batch), so its cost follows the run. Pass the writers' `pool` where the
    store allows one process at a time.

    Otherwise it validates the asset value its IO manager loads, whole (small frames)."""
    key = dg.AssetKey.from_coercible(asset_key)
    check_name = f"pandera_{model.__name__}"
    description = f"Pandera model {model.__name__} (lazy validation)"

    if in_warehouse or rows_written is not None:
        table = ".".join(identifier(part) for part in key.path)

        @dg.asset_check(asset=key, name=check_name, blocking=blocking, pool=pool, required_resource_keys={"warehouse"},
                        description=description + (" of the rows the run wrote" if rows_written else "")
                        + f", {chunk_rows:,} rows at a time; uniqueness in the warehouse")
        def _table_check(context) -> dg.AssetCheckResult:  # AssetCheckExecutionContext
            where, params = rows_written(context) if rows_written else ("1 = 1", [])
            with context.resources.warehouse.connect() as conn:
                if not conn.table_exists(*key.path):
                    return _result(0, [])
                return _result(*validate_table(conn, table, model, where, params, chunk_rows))

        return _table_check

    @dg.asset_check(asset=key, name=check_name, blocking=blocking, pool=pool, description=description)
    def _check(asset_value: pd.DataFrame) -> dg.AssetCheckResult:
        return _result(len(asset_value), run_model(model, asset_value))

    return _check


def _result(rows: int, found: list[dict]) -> dg.AssetCheckResult:
    failures = [{**f, "examples": [mask_value(f["column"], e) for e in f["examples"]]}  # kept for good
                for f in found]
    metadata = {
        "rows": dg.MetadataValue.int(int(rows)),
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
