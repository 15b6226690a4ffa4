"""Staging layer: typed, normalized and validated. Only valid rows pass; the rest go to quarantine."""

import dagster as dg
import pandas as pd

from .. import staging as logic
from ..quality.checks import pandera_asset_check
from ..resources.warehouse import Warehouse, WarehouseConnection
from ..schemas.tables import STAGING_MODELS
from .common import WAREHOUSE_POOL, frame_metadata, merge_quarantine, prepare_quarantine, read_table, utc_now
from .raw import EVENT_COLUMNS, ORDER_COLUMNS
from ..sources.crm import CUSTOMER_COLUMNS


def _quarantine(conn: WarehouseConnection, source: str, rejected: pd.DataFrame) -> dict:
    merge_quarantine(conn, source, rejected)
    return rejected["rule"].value_counts().to_dict() if len(rejected) else {}


@dg.asset(key=["staging", "customers"], deps=[["raw", "crm_customers"]], group_name="staging",
          pool=WAREHOUSE_POOL, kinds={"pandas", "duckdb"}, tags={"pii": "true"},
          automation_condition=dg.AutomationCondition.eager())
def customers(warehouse: Warehouse) -> dg.Output[pd.DataFrame]:
    """CRM customers in canonical form (emails, phones, countries, times), raw values alongside."""
    with warehouse.connect() as conn:
        raw = read_table(conn, "raw", "crm_customers", CUSTOMER_COLUMNS)
        result = logic.stage_customers(raw, now=utc_now())
        prepare_quarantine(conn, "crm_customers")
        with conn.transaction():
            by_rule = _quarantine(conn, "crm_customers", result.quarantined)
    return dg.Output(result.valid, metadata=frame_metadata(
        result.valid, rows_in=len(raw), quarantined=len(result.quarantined),
        quarantined_by_rule=by_rule, **logic.schema_metadata("customers", result.valid)))


@dg.multi_asset(
    outs={
        "orders": dg.AssetOut(key=["staging", "orders"], tags={"pii": "true"}),
        "order_lines": dg.AssetOut(key=["staging", "order_lines"]),
    },
    ins={"staged_customers": dg.AssetIn(key=["staging", "customers"])},
    deps=[["raw", "shop_orders"]],
    group_name="staging",
    pool=WAREHOUSE_POOL,
)
def orders(staged_customers: pd.DataFrame, warehouse: Warehouse):
    """Shop orders and their lines in canonical form: UTC times, minor units, reporting currency."""
    with warehouse.connect() as conn:
        raw = read_table(conn, "raw", "shop_orders", ORDER_COLUMNS)
        result = logic.stage_orders(raw, known_customers=staged_customers["source_id"], now=utc_now())
        prepare_quarantine(conn, "shop_orders")
        with conn.transaction():
            by_rule = _quarantine(conn, "shop_orders", result.quarantined)
    yield dg.Output(result.orders, output_name="orders", metadata=frame_metadata(
        result.orders, rows_in=len(raw), quarantined=len(result.quarantined),
        quarantined_by_rule=by_rule, **logic.schema_metadata("orders", result.orders)))
    yield dg.Output(result.lines, output_name="order_lines", metadata=frame_metadata(
        result.lines, **logic.schema_metadata("order_lines", result.lines)))


@dg.asset(key=["staging", "events"], deps=[["raw", "events"]], group_name="staging",
          pool=WAREHOUSE_POOL, kinds={"pandas", "duckdb"}, tags={"pii": "true"},
          automation_condition=dg.AutomationCondition.eager())
def events(warehouse: Warehouse) -> dg.Output[pd.DataFrame]:
    """Tracking events validated against the tracking plan, one row per messageId."""
    with warehouse.connect() as conn:
        raw = read_table(conn, "raw", "events", EVENT_COLUMNS)
        result = logic.stage_events(raw, now=utc_now())
        prepare_quarantine(conn, "events")
        with conn.transaction():
            by_rule = _quarantine(conn, "events", result.quarantined)
    return dg.Output(result.valid, metadata=frame_metadata(
        result.valid, rows_in=len(raw), quarantined=len(result.quarantined),
        quarantined_by_rule=by_rule, **logic.schema_metadata("events", result.valid)))


STAGING_CHECKS = [
    pandera_asset_check(["staging", name], model, blocking=True) for name, model in STAGING_MODELS.items()
]

defs = dg.Definitions(assets=[customers, orders, events], asset_checks=STAGING_CHECKS)
