"""The guard store is filled from the warehouse: consent, unsubscribes (sticky) and purchases."""

from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from personalization_assets.assets.realtime import trigger_guard
from personalization_assets.realtime.guards import SqliteGuardProvider, suppression_reason
from personalization_assets.resources.warehouse import DuckDBWarehouse

BOUGHT = datetime(2026, 5, 4, 10, 30, tzinfo=timezone.utc)


def _warehouse(tmp_path, suppression: bool) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(database=str(tmp_path / "wh.duckdb"))
    keys = ["k1", "k2", "k3", "k4"]
    tables = {
        ("core", "customers"): pd.DataFrame({
            "customer_key": keys, "email": ["a@x.org", "b@x.org", "c@x.org", "d@x.org"],
            "first_name": "A", "last_name": "B", "country": "DE", "timezone": ["Europe/Berlin", None, None, None],
            "locale": "de", "email_opt_in": [True, True, False, True], "consent_processing": True}),
        ("core", "customer_crosswalk"): pd.DataFrame({"record_id": [f"crm:{k}" for k in keys], "customer_key": keys}),
        ("core", "identity_map"): pd.DataFrame({"identity_type": "user_id", "identity": ["u1", "u2", "u3", "u4"],
                                                "customer_key": keys}),
        ("staging", "orders"): pd.DataFrame({
            "order_id": ["o1"], "customer_record_id": ["crm:k1"], "email": ["a@x.org"], "status": ["paid"],
            "currency": ["EUR"], "total_minor": [1000], "created_at": [pd.Timestamp(BOUGHT)], "cart_id": [None]}),
        ("staging", "order_lines"): pd.DataFrame({
            "order_id": ["o1"], "sku": ["S"], "product_name": ["P"], "category": ["c"], "quantity": [1],
            "unit_price_minor": [1000], "line_total_minor": [1000], "currency": ["EUR"]}),
        ("staging", "events"): pd.DataFrame({
            "type": ["track"], "event": ["product viewed"], "user_id": ["u1"], "anonymous_id": [None],
            "timestamp": [pd.Timestamp(BOUGHT)], "cart_id": [None], "sku": ["S"], "category": ["c"],
            "currency": [None], "value_minor": [None]}),
        ("staging", "email_events"): pd.DataFrame({
            "provider": ["sendgrid"], "provider_event_id": ["e1"], "type": ["spamreport"], "email": ["d@x.org"],
            "customer_key": [None], "timestamp": [pd.Timestamp(BOUGHT)], "is_machine": [False]}),
    }
    if suppression:
        tables[("activation", "suppression")] = pd.DataFrame(
            {"email": ["b@x.org"], "customer_key": [None], "reason": ["unsubscribed"]})
    with warehouse.connect() as conn:
        for (schema, table), frame in tables.items():
            conn.prepare_table(schema, table, frame)
            conn.replace_frame(schema, table, frame)
    return warehouse


def _sync(warehouse, path):
    result = dg.materialize([trigger_guard], resources={"warehouse": warehouse}, run_config={
        "ops": {"activation__trigger_guard": {"config": {"guard_path": str(path)}}}})
    assert result.success
    return result


def test_guard_store_reflects_the_warehouse_and_keeps_unsubscribes(tmp_path):
    path = tmp_path / "guard.sqlite"
    result = _sync(_warehouse(tmp_path, suppression=True), path)
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["dagster/row_count"].value == 4
    guard = SqliteGuardProvider(path)
    u1, u2, u3, u4 = (guard.state(u) for u in ("u1", "u2", "u3", "u4"))
    assert suppression_reason(u1) is None and u1.last_purchase_at == BOUGHT and u1.timezone == "Europe/Berlin"
    assert suppression_reason(u2) == "unsubscribed"  # on the suppression list by e-mail
    assert suppression_reason(u3) == "no_consent"  # never opted in
    assert suppression_reason(u4) == "unsubscribed"  # complained through the e-mail platform
    assert guard.state("stranger").known is False
    guard.close()

    # The list loses b@x.org (say, a CRM re-import): the guard keeps the unsubscribe.
    (tmp_path / "wh.duckdb").unlink()
    _sync(_warehouse(tmp_path, suppression=False), path)
    guard = SqliteGuardProvider(path)
    assert suppression_reason(guard.state("u2")) == "unsubscribed"
    assert guard.state("u1").last_purchase_at == BOUGHT
    guard.close()


def test_a_large_guard_copy_streams_in_chunks_and_counts_every_row(tmp_path, monkeypatch):
    """5,000 tracked customers read 2,048 at a time (DuckDB's smallest chunk): every row reaches
    the store once, and the metadata's counts are the store's, not the first chunk's."""
    import personalization_assets.assets.realtime as realtime_assets

    n = 5_000
    keys = [f"k{i}" for i in range(n)]
    warehouse = _warehouse(tmp_path, suppression=False)  # its orders, events and e-mail events; people replaced
    tables = {
        ("core", "customers"): pd.DataFrame({
            "customer_key": keys, "email": [f"p{i}@x.org" for i in range(n)], "first_name": "A", "last_name": "B",
            "country": "DE", "timezone": None, "locale": "de", "email_opt_in": [i % 3 != 0 for i in range(n)],
            "consent_processing": True}),
        ("core", "customer_crosswalk"): pd.DataFrame({"record_id": [f"crm:{k}" for k in keys], "customer_key": keys}),
        ("core", "identity_map"): pd.DataFrame({"identity_type": "user_id", "identity": [f"u{i}" for i in range(n)],
                                                "customer_key": keys}),
        ("activation", "suppression"): pd.DataFrame({"email": [f"p{i}@x.org" for i in range(0, n, 7)],
                                                     "customer_key": None, "reason": "unsubscribed"}),
    }
    with warehouse.connect() as conn:
        for (schema, table), frame in tables.items():
            conn.prepare_table(schema, table, frame)
            conn.replace_frame(schema, table, frame)
    chunk_sizes = []
    real_read_chunks = realtime_assets.read_chunks

    def counted(*args, **kwargs):
        for frame in real_read_chunks(*args, **kwargs):
            chunk_sizes.append(len(frame))
            yield frame

    monkeypatch.setattr(realtime_assets, "GUARD_CHUNK_ROWS", 2_048)
    monkeypatch.setattr(realtime_assets, "read_chunks", counted)
    path = tmp_path / "guard.sqlite"
    meta = _sync(warehouse, path).get_asset_materialization_events()[0].materialization.metadata
    assert len(chunk_sizes) == 3 and max(chunk_sizes) <= 2_048 and sum(chunk_sizes) == n
    import sqlite3
    with sqlite3.connect(path) as store:
        rows, unsubscribed, sendable = store.execute(
            "select count(*), sum(unsubscribed), sum(email_opt_in and consent_processing and not unsubscribed)"
            " from customer_guard").fetchone()
    assert rows == n and unsubscribed == len(range(0, n, 7))
    assert sendable == sum(1 for i in range(n) if i % 3 != 0 and i % 7 != 0)
    assert (meta["dagster/row_count"].value, meta["synced"].value, meta["unsubscribed"].value,
            meta["sendable"].value) == (n, n, unsubscribed, sendable)
