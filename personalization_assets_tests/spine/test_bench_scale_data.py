"""bench.scale's generator and loader at a tiny N: chunks add up, and the loaded raw tables stage cleanly."""

from datetime import datetime, timezone

import duckdb
import pandas as pd

from bench import scale_data
from personalization_assets.staging import stage_customers, stage_events, stage_orders

NOW = datetime(2026, 12, 5, 12, tzinfo=timezone.utc)


def _load(tmp_path, chunk_rows):
    parquet, db = tmp_path / f"parquet{chunk_rows}", tmp_path / f"w{chunk_rows}.duckdb"
    sizes = scale_data.generate(parquet, 60, NOW, chunk_rows=chunk_rows, say=lambda line: None)
    rows = scale_data.load(db, parquet, say=lambda line: None)
    with duckdb.connect(str(db)) as con:
        tables = {t: con.execute(f"select * from raw.{t}").df() for t in scale_data.RAW_TABLES}
    return sizes, rows, tables


def test_chunks_add_up_and_customers_do_not_depend_on_the_chunking(tmp_path):
    sizes, rows, tables = _load(tmp_path, chunk_rows=16)
    assert rows == {"crm_customers": sizes["customers"], "shop_orders": sizes["orders"],
                    "events": sizes["events"], "email_events": sizes["email_events"]} == {
        "crm_customers": 60, "shop_orders": 90, "events": 600, "email_events": 60}
    assert len(list((tmp_path / "parquet16" / "events").glob("*.parquet"))) == 38  # 600 rows / 16
    for table, key in (("crm_customers", "customer_id"), ("shop_orders", "order_id"), ("events", "message_id")):
        assert tables[table][key].is_unique, table
    assert tables["events"]["bus_offset"].tolist() == list(range(1, 601))
    _, _, whole = _load(tmp_path, chunk_rows=1_000)
    pd.testing.assert_frame_equal(tables["crm_customers"], whole["crm_customers"])
    duplicates = tables["crm_customers"]["email"].duplicated().sum()
    assert 0 < duplicates < 10  # the same person registered twice, about 2 %... of 60: a few at most


def test_the_loaded_raw_tables_pass_staging(tmp_path):
    _, _, tables = _load(tmp_path, chunk_rows=25)
    customers = stage_customers(tables["crm_customers"], now=NOW)
    assert customers.quarantined.empty, customers.quarantined.head().to_dict("records")
    assert len(customers.valid) == 60
    orders = stage_orders(tables["shop_orders"], known_customers=customers.valid["source_id"], now=NOW)
    assert orders.quarantined.empty, orders.quarantined.head().to_dict("records")
    assert len(orders.orders) == 90 and len(orders.lines) >= 90
    assert orders.lines["category"].notna().all() and orders.orders["total_minor"].gt(0).all()
    events = stage_events(tables["events"], now=NOW)
    assert events.quarantined.empty, events.quarantined.head().to_dict("records")
    tracks = events.valid[events.valid["type"] == "track"]
    assert len(events.valid) == 600 and len(tracks) > 400 and tracks["event_code"].notna().all()
    assert set(events.valid["event"]) <= {"product viewed", "product added", "cart viewed", "checkout started",
                                          "order completed", None}
    # every order and event names a customer of the CRM; a few events are anonymous only
    assert set(tables["shop_orders"]["customer_id"].astype(int)) <= set(tables["crm_customers"]["customer_id"])
    assert events.valid["user_id"].isna().sum() < 0.2 * 600
