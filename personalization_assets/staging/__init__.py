"""How a raw table becomes a staging table: normalize to the canonical form (`normalize/`), then
validate (`quality/rules.py`); plain Python over DataFrames.

Every input row ends up either valid or quarantined (with its rule, message and raw payload),
never both and never neither. Each normalized column keeps its raw original in `<column>_raw`.
"""

from __future__ import annotations

import pandas as pd

from .common import REPORTING_CURRENCY, SOURCE_FORMATS, SourceFormat, Staged, StagedOrders
from .customers import stage_customers
from .events import stage_events
from .orders import stage_orders

RAW_COLUMN_NOTE = "raw original, as the source sent it"


def schema_metadata(table: str, frame: pd.DataFrame) -> dict:
    """The UI column schema: the table's Pandera model (written once, in schemas/), plus the other
    columns of the frame, each `<column>_raw` described as the raw original of `<column>`."""
    import dagster as dg

    from ..schemas.tables import STAGING_MODELS, table_schema

    modelled = table_schema(STAGING_MODELS[table])
    known = {c.name for c in modelled.columns}
    extra = [dg.TableColumn(str(c), str(t), description=(
        f"{RAW_COLUMN_NOTE} (canonical form in `{str(c)[:-4]}`)" if str(c).endswith("_raw") else None))
        for c, t in frame.dtypes.items() if str(c) not in known]
    return {"dagster/column_schema": dg.TableSchema(columns=[*modelled.columns, *extra])}


__all__ = ["REPORTING_CURRENCY", "SOURCE_FORMATS", "SourceFormat", "Staged", "StagedOrders", "schema_metadata",
           "stage_customers", "stage_events", "stage_orders"]
