"""How a raw table becomes a staging table: normalize to the canonical form (`normalize/`), then
validate (`quality/rules.py`); plain Python over DataFrames.

Every input row ends up either valid or quarantined (with its rule, message and raw payload),
never both and never neither. Each normalized column keeps its raw original in `<column>_raw`.
"""

from __future__ import annotations

from .common import REPORTING_CURRENCY, SOURCE_FORMATS, SourceFormat, Staged, StagedOrders
from .customers import stage_customers
from .events import StagedEvents, stage_events
from .orders import stage_orders

__all__ = ["REPORTING_CURRENCY", "SOURCE_FORMATS", "SourceFormat", "Staged", "StagedEvents", "StagedOrders",
           "stage_customers", "stage_events", "stage_orders"]
