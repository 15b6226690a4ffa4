"""Staging layer: typed, normalized and validated. Only valid rows pass; the rest go to quarantine."""

import dagster as dg
import pandas as pd

from .. import staging as logic
from ..quality.checks import pandera_asset_check
from ..resources.warehouse import Warehouse, WarehouseConnection
from ..schemas.tables import STAGING_MODELS
from ..partitions import ARRIVAL_DAYS, SINGLE_RUN
from .common import (
    EAGER, WAREHOUSE_POOL, frame_metadata, merge_quarantine, prepare_quarantine, read_table, read_window, utc_now,
    write_window,
)
from .raw import EVENT_COLUMNS, ORDER_COLUMNS
from ..sources.crm import CUSTOMER_COLUMNS


def _quarantine(conn: WarehouseConnection, source: str, rejected: pd.DataFrame) -> dict:
    merge_quarantine(conn, source, rejected)
    return rejected["rule"].value_counts().to_dict() if len(rejected) else {}


@dg.asset(key=["staging", "customers"], deps=[["raw", "crm_customers"]], group_name="staging",
          pool=WAREHOUSE_POOL, kinds={"pandas", "duckdb"}, tags={"pii": "true"},
          automation_condition=EAGER)
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
    specs=[
        dg.AssetSpec(["staging", "orders"], deps=[["raw", "shop_orders"], ["staging", "customers"]],
                     group_name="staging", tags={"pii": "true"}, kinds={"pandas", "duckdb"},
                     metadata={"partition_expr": "loaded_at"}, automation_condition=EAGER),
        dg.AssetSpec(["staging", "order_lines"], deps=[["raw", "shop_orders"]], group_name="staging",
                     kinds={"pandas", "duckdb"}, metadata={"partition_expr": "loaded_at"},
                     automation_condition=EAGER),
    ],
    pool=WAREHOUSE_POOL,
    partitions_def=ARRIVAL_DAYS,
    backfill_policy=SINGLE_RUN,
)
def orders(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Shop orders and their lines in canonical form (UTC times, minor units), partitioned by the
    day their latest version arrived; an order lives only in that day's partition."""
    window = context.partition_time_window
    with warehouse.connect() as conn:
        raw = read_window(conn, "raw", "shop_orders", "loaded_at", window.start, window.end, ORDER_COLUMNS)
        known = read_table(conn, "staging", "customers", ["source_id"])["source_id"]
        result = logic.stage_orders(raw, known_customers=known, now=utc_now())
        prepare_quarantine(conn, "shop_orders")
        for table, frame in (("orders", result.orders), ("order_lines", result.lines)):
            if len(frame):
                conn.prepare_table("staging", table, frame)  # DDL before the transaction
        with conn.transaction():
            by_rule = _quarantine(conn, "shop_orders", result.quarantined)
            write_window(conn, "staging", "orders", result.orders, "loaded_at", window.start, window.end,
                         key="order_id")
            write_window(conn, "staging", "order_lines", result.lines, "loaded_at", window.start, window.end,
                         key="order_id")
    days = {"partitions": len(context.partition_keys)}
    yield dg.MaterializeResult(asset_key=["staging", "orders"], metadata=frame_metadata(
        result.orders, rows_in=len(raw), quarantined=len(result.quarantined), quarantined_by_rule=by_rule,
        **days, **logic.schema_metadata("orders", result.orders)))
    yield dg.MaterializeResult(asset_key=["staging", "order_lines"], metadata=frame_metadata(
        result.lines, **days, **logic.schema_metadata("order_lines", result.lines)))


@dg.asset(key=["staging", "events"], deps=[["raw", "events"]], group_name="staging",
          pool=WAREHOUSE_POOL, kinds={"pandas", "duckdb"}, tags={"pii": "true"},
          partitions_def=ARRIVAL_DAYS, backfill_policy=SINGLE_RUN,
          metadata={"partition_expr": "received_at"},
          automation_condition=EAGER)
def events(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Tracking events validated against the tracking plan, one row per messageId, partitioned by
    the day the collector received them."""
    window = context.partition_time_window
    with warehouse.connect() as conn:
        raw = read_window(conn, "raw", "events", "received_at", window.start, window.end, EVENT_COLUMNS)
        result = logic.stage_events(raw, now=utc_now())
        prepare_quarantine(conn, "events")
        if len(result.valid):
            conn.prepare_table("staging", "events", result.valid)
        with conn.transaction():
            by_rule = _quarantine(conn, "events", result.quarantined)
            write_window(conn, "staging", "events", result.valid, "received_at", window.start, window.end)
    return dg.MaterializeResult(metadata=frame_metadata(
        result.valid, rows_in=len(raw), quarantined=len(result.quarantined), quarantined_by_rule=by_rule,
        partitions=len(context.partition_keys), **logic.schema_metadata("events", result.valid)))


STAGING_CHECKS = [
    pandera_asset_check(["staging", name], model, blocking=True) for name, model in STAGING_MODELS.items()
]

defs = dg.Definitions(assets=[customers, orders, events], asset_checks=STAGING_CHECKS)
