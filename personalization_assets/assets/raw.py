"""Raw layer: one asset per source, each incremental with its cursor stored in the warehouse.

Rows and cursor move in one transaction, so a failed load leaves neither half-written rows nor a
cursor that skips data. Loads are upserts on the source's key, so re-running never duplicates.
"""

import json
from datetime import timedelta

import dagster as dg
import pandas as pd

from ..resources.sources import CrmDatabase, EventBusResource, OrdersApi
from ..sources import SourceError
from ..sources.crm import CrmCursor
from ..resources.warehouse import Warehouse
from ..staging.common import json_text
from .common import (
    WAREHOUSE_POOL, frame_metadata, merge_quarantine, prepare_cursors, prepare_quarantine,
    read_cursor, utc_now, write_cursor,
)

# Sources land at least daily; warn after 2 h without a load, fail after 26 h.
RAW_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=2))

ORDER_COLUMNS = ["order_id", "customer_id", "email", "status", "currency", "total", "created_at",
                 "updated_at", "cart_id", "checkout_id", "lines", "payload", "loaded_at"]
EVENT_COLUMNS = ["message_id", "bus_offset", "received_at", "payload"]


def _fail(exc: SourceError) -> dg.Failure:
    return dg.Failure(description=f"{exc} (cursor not moved, nothing written)",
                      metadata={"source": exc.source, "cause": exc.cause})


@dg.asset(key=["raw", "crm_customers"], group_name="ingestion", pool=WAREHOUSE_POOL,
          kinds={"sql", "duckdb"}, tags={"pii": "true"}, freshness_policy=RAW_FRESHNESS)
def crm_customers(crm: CrmDatabase, warehouse: Warehouse) -> dg.MaterializeResult:
    """Customer records as the CRM holds them, untouched. Loaded incrementally on (updated_at, id)."""
    with warehouse.connect() as conn:
        cursor = CrmCursor.from_json(read_cursor(conn, "crm_customers"))
    try:
        frame, new_cursor = crm.extract_customers(cursor)
    except SourceError as exc:
        raise _fail(exc) from exc
    for column in ("created_at", "updated_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    with warehouse.connect() as conn:
        prepare_cursors(conn)
        if not frame.empty:
            conn.prepare_table("raw", "crm_customers", frame)
    with warehouse.connect() as conn, conn.transaction():
        written = conn.upsert_frame("raw", "crm_customers", frame, ["customer_id"])
        write_cursor(conn, "crm_customers", new_cursor.to_json())
        total = conn.scalar("select count(*) from raw.crm_customers") if conn.table_exists("raw", "crm_customers") else 0
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, rows_loaded=written, rows_total=int(total or 0), cursor=new_cursor.to_json()))


def _order_row(order: dict) -> dict:
    return {
        "order_id": str(order["order_id"]),
        "customer_id": None if order.get("customer_id") in (None, "") else str(order["customer_id"]),
        "email": order.get("email"),
        "status": order.get("status"),
        "currency": order.get("currency"),
        "total": None if order.get("total") is None else str(order["total"]),
        "created_at": order.get("created_at"),
        "updated_at": str(order["updated_at"]),
        "cart_id": order.get("cart_id"),
        "checkout_id": order.get("checkout_id"),
        "lines": json.dumps(order.get("lines") or []),
        "payload": json.dumps(order, sort_keys=True),
        "loaded_at": None,  # stamped per load: the arrival day that partitions staging.orders
    }


def split_orders(orders: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Orders that can be keyed, and the rest with a reason (they go to quarantine, not away)."""
    good, bad = [], []
    for index, order in enumerate(orders):
        if not isinstance(order, dict) or not order.get("order_id") or not order.get("updated_at"):
            bad.append({"record_id": str(order.get("order_id") if isinstance(order, dict) else f"page-item-{index}"),
                        "raw_payload": json.dumps(order, default=str), "rule": "raw.order_keys",
                        "message": "order without order_id or updated_at"})
            continue
        good.append(_order_row(order))
    return pd.DataFrame(good, columns=ORDER_COLUMNS), pd.DataFrame(
        bad, columns=["record_id", "raw_payload", "rule", "message"])


@dg.asset(key=["raw", "shop_orders"], group_name="ingestion", pool=WAREHOUSE_POOL,
          kinds={"api", "duckdb"}, tags={"pii": "true"}, freshness_policy=RAW_FRESHNESS)
def shop_orders(orders_api: OrdersApi, warehouse: Warehouse) -> dg.MaterializeResult:
    """Orders from the shop's REST API (OAuth 2.0), loaded incrementally on `updated_since`.

    Each order keeps its latest version, stamped with `loaded_at` (its arrival day partitions
    `staging.orders`)."""
    with warehouse.connect() as conn:
        cursor = (read_cursor(conn, "shop_orders") or {}).get("updated_since")
    pages = 0
    orders: list = []
    try:
        with orders_api.client() as client:
            for page in client.iter_order_pages(cursor):
                orders.extend(page)
                pages += 1
            retries = client.retries_done
    except SourceError as exc:
        raise _fail(exc) from exc
    frame, rejected = split_orders(orders)
    frame["loaded_at"] = pd.Series(pd.Timestamp(utc_now()), index=frame.index, dtype="datetime64[ns, UTC]")
    new_cursor = cursor
    if not frame.empty:
        stamps = pd.to_datetime(frame["updated_at"], utc=True, format="ISO8601")
        new_cursor = stamps.max().isoformat()
    with warehouse.connect() as conn:
        prepare_cursors(conn)
        prepare_quarantine(conn, "shop_orders")
        if not frame.empty:
            conn.prepare_table("raw", "shop_orders", frame)
    with warehouse.connect() as conn, conn.transaction():
        written = conn.upsert_frame("raw", "shop_orders", frame, ["order_id"])
        quarantined = merge_quarantine(conn, "shop_orders", rejected)
        write_cursor(conn, "shop_orders", {"updated_since": new_cursor})
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, rows_loaded=written, pages=pages, retries=retries, quarantined=quarantined,
        cursor={"updated_since": new_cursor}))


@dg.asset(key=["raw", "events"], group_name="ingestion", pool=WAREHOUSE_POOL,
          kinds={"sqlite", "duckdb"}, tags={"pii": "true"}, freshness_policy=RAW_FRESHNESS)
def events(event_bus: EventBusResource, warehouse: Warehouse) -> dg.MaterializeResult:
    """Behavioural events (Segment wire format) read from the event bus after the stored offset.

    Each event is stored once: the first arrival of a `messageId` wins.
    """
    with warehouse.connect() as conn:
        after = int((read_cursor(conn, "events") or {}).get("offset", 0))
    bus = event_bus.open()
    records = []
    try:
        while True:
            batch = bus.read(after_offset=after if not records else records[-1].offset, limit=5000)
            if not batch:
                break
            records.extend(batch)
    finally:
        close = getattr(bus, "close", None)
        if close:
            close()
    frame = pd.DataFrame(
        [{"message_id": str(r.message_id), "bus_offset": int(r.offset),
          "received_at": r.received_at, "payload": json_text(r.event)} for r in records],
        columns=EVENT_COLUMNS,
    )
    frame = frame.drop_duplicates(subset=["message_id"], keep="first")
    if not frame.empty:
        frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
    new_offset = records[-1].offset if records else after
    with warehouse.connect() as conn:
        prepare_cursors(conn)
        if not frame.empty:
            conn.prepare_table("raw", "events", frame)
    with warehouse.connect() as conn, conn.transaction():
        if not frame.empty and conn.table_exists("raw", "events"):
            seen = set(conn.query(
                "select message_id from raw.events where bus_offset > ? or message_id in "
                "(select unnest(?::varchar[]))" if conn.dialect == "duckdb" else
                "select message_id from raw.events where bus_offset > ?",
                [after, frame["message_id"].tolist()] if conn.dialect == "duckdb" else [after],
            )["message_id"])
            frame = frame[~frame["message_id"].isin(seen)]
        if not frame.empty:
            conn.insert_frame("raw", "events", frame)
        write_cursor(conn, "events", {"offset": int(new_offset)})
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, rows_loaded=len(frame), read_from_bus=len(records),
        offsets={"from": after, "to": int(new_offset)}))


defs = dg.Definitions(assets=[crm_customers, shop_orders, events])
