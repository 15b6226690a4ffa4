"""A window's restage of staging.orders reads and stages raw.shop_orders a chunk of orders at a
time: the staged orders, lines, quarantine and counts equal the one-chunk restage's, and the other
day stays as it was."""

import json
from datetime import datetime, timedelta, timezone

import duckdb
import pandas as pd

from personalization_assets.assets.staging import _order_ranges, _raw_orders, restage_orders
from personalization_assets.warehouse import WarehouseConnection

DAY = datetime(2026, 5, 30, tzinfo=timezone.utc)


def _order(k: int) -> dict:
    """Order k: mostly valid; some with a bad currency, an unknown customer, a bad line, an
    unknown category, a future date or lines that are not JSON; two arrival days."""
    created = (DAY - timedelta(days=2, minutes=k)).isoformat()
    if k % 11 == 5:
        created = (DAY + timedelta(days=30)).isoformat()
    lines = [{"line_no": 1, "sku": f"S{k}", "name": "Mug", "category": "Accessories" if k % 6 else f"odd-{k % 4}",
              "quantity": 2 if k % 9 else 0, "unit_price": "10.00"},
             {"line_no": 2, "sku": "T", "name": "Tea", "category": "accessories", "quantity": 1, "unit_price": "3.50"}]
    return {"order_id": f"o-{k:03d}", "customer_id": str(1000 + k % 13) if k % 3 else None,
            "email": f"Buyer{k}@Example.org", "status": "paid" if k % 10 else "shipped",
            "currency": "EUR" if k % 8 else "XXX", "total": "23.50", "created_at": created, "updated_at": created,
            "cart_id": f"c{k}" if k % 2 else None, "checkout_id": None,
            "lines": json.dumps(lines) if k % 17 != 3 else "[{not json", "payload": json.dumps({"k": k}),
            "loaded_at": DAY + timedelta(days=k % 2, hours=1)}


def _restaged(chunk_rows: int):
    conn = WarehouseConnection(duckdb.connect(":memory:"), "duckdb")
    raw = pd.DataFrame([_order(k) for k in range(47)])
    raw["loaded_at"] = raw["loaded_at"].astype("datetime64[ns, UTC]")
    conn.execute("create schema if not exists raw")
    conn.execute("create schema if not exists staging")
    conn.prepare_table("raw", "shop_orders", raw)
    conn.insert_frame("raw", "shop_orders", raw)
    known = pd.DataFrame({"source_id": [str(1000 + i) for i in range(10)]})  # 1010-1012 are unknown
    conn.prepare_table("staging", "customers", known)
    conn.insert_frame("staging", "customers", known)
    counts = [restage_orders(conn, day, day + timedelta(days=1), chunk_rows=chunk_rows)
              for day in (DAY, DAY + timedelta(days=1), DAY)]  # both days, then the first again
    tables = {t: conn.query(f"select * from {t}") for t in ("staging.orders", "staging.order_lines")}
    assert conn.rows("select table_name from information_schema.tables where table_name like '%restaged'") == []  # dropped
    tables["quarantine"] = conn.query("select record_id, rule, message, status, attempts from quarantine.shop_orders")
    return counts, tables


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns[:2]), ignore_index=True)


def test_chunked_restage_equals_one_chunk():
    whole_counts, whole = _restaged(chunk_rows=1_000)
    chunked_counts, chunked = _restaged(chunk_rows=4)
    for run, run_1 in zip(chunked_counts, whole_counts):
        assert (run.rows_in, run.by_rule, run.unmapped) == (run_1.rows_in, run_1.by_rule, run_1.unmapped)
        assert (run.orders, run.lines, len(run.quarantined)) == (run_1.orders, run_1.lines, len(run_1.quarantined))
        pd.testing.assert_frame_equal(_sorted(run.quarantined), _sorted(run_1.quarantined))
    for name in whole:
        pd.testing.assert_frame_equal(_sorted(chunked[name]), _sorted(whole[name]))
    # the fixture reaches valid orders, several rejection rules and unmapped categories, on both days
    run = whole_counts[0]
    assert run.rows_in > 4 and run.orders and run.lines and len(run.by_rule) >= 3
    assert run.unmapped and run.unmapped.get("product_categories")
    assert len(run.sample_orders) == min(run.orders, 10) and len(run.sample_lines) == 10
    assert whole["staging.orders"]["loaded_at"].dt.floor("D").nunique() == 2
    # each chunk looks up the customers it names: orders of 1010-1012 wait in quarantine, the
    # known customers' orders are staged
    naming = {_order(k)["order_id"]: _order(k)["customer_id"] for k in range(47)}
    unknown = set(whole["quarantine"].record_id[whole["quarantine"].rule == "orders.unknown_customer"])
    assert unknown and {naming[o] for o in unknown} <= {"1010", "1011", "1012"}
    staged = whole["staging.orders"].customer_record_id.dropna()
    assert len(staged) and set(staged) <= {f"crm:{1000 + i}" for i in range(10)}


def _order_ranges_split_the_window(conn) -> None:
    """One query of the window's order ids gives the ranges; each chunk then reads its own orders
    (not the window sorted again per chunk). Every order of the window falls in exactly one range,
    an order id loaded twice stays in one chunk, and an exact multiple ends on an empty range."""
    assert _order_ranges(conn, DAY, DAY + timedelta(days=1), 4) == [(None, None)]  # no raw table yet
    raw = pd.DataFrame([_order(k) for k in range(47)] + [_order(8)])  # o-008 twice, as two loads
    raw["loaded_at"] = raw["loaded_at"].astype("datetime64[ns, UTC]")
    conn.execute("create schema if not exists raw")
    conn.prepare_table("raw", "shop_orders", raw)
    conn.insert_frame("raw", "shop_orders", raw)
    day = raw[raw["loaded_at"] < pd.Timestamp(DAY + timedelta(days=1))]
    assert (day["order_id"] == "o-008").sum() == 2
    for rows in (4, 5, len(day)):
        ranges = _order_ranges(conn, DAY, DAY + timedelta(days=1), rows)
        chunks = [_raw_orders(conn, DAY, DAY + timedelta(days=1), r) for r in ranges]
        assert len(ranges) == len(day) // rows + 1
        assert all(len(c) <= rows + 1 for c in chunks)  # +1: the order loaded twice
        got = pd.concat(chunks)["order_id"]
        assert sorted(got) == sorted(day["order_id"])  # each order once, none lost
        assert (got.to_numpy()[1:] >= got.to_numpy()[:-1]).all()  # chunks in order_id order
    assert len(chunks[-1]) == 0  # rows = the window's size: one full chunk, then an empty range


def test_order_ranges_on_duckdb():
    _order_ranges_split_the_window(WarehouseConnection(duckdb.connect(":memory:"), "duckdb"))


def test_order_ranges_on_fakesnow():
    from personalization_assets_tests.marts.conftest import fakesnow_connection

    with fakesnow_connection() as conn:
        _order_ranges_split_the_window(conn)
