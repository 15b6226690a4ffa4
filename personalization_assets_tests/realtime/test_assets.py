"""The Dagster shells: ledger mirror (idempotent) and backtest over staged events, on DuckDB."""

import dagster as dg
import pandas as pd

from personalization_assets.assets.realtime import trigger_backtest, trigger_fires
from personalization_assets.realtime.ledger import Ledger
from personalization_assets.resources.warehouse import DuckDBWarehouse

from personalization_assets_tests.realtime.helpers import T0, H, M, engine, ev, run


def _mirror(warehouse, ledger_path):
    result = dg.materialize([trigger_fires], resources={"warehouse": warehouse}, run_config={
        "ops": {"activation__trigger_fires": {"config": {"ledger_path": str(ledger_path)}}}})
    assert result.success
    with warehouse.connect() as conn:
        return conn.query("select * from activation.trigger_fires order by fire_key")


def test_fire_ledger_mirror_is_idempotent_and_incremental(tmp_path):
    warehouse = DuckDBWarehouse(database=str(tmp_path / "wh.duckdb"))
    ledger = Ledger(tmp_path / "triggers.sqlite")
    e = engine("cart_abandonment")
    ledger.commit(run(e, [ev("Product Added", T0, user=u, cart=u) for u in ("a", "b")], T0 + 2 * H), 2)
    first = _mirror(warehouse, tmp_path / "triggers.sqlite")
    assert list(first["customer_id"]) == ["a", "b"] and set(first["outcome"]) == {"fire"}
    assert _mirror(warehouse, tmp_path / "triggers.sqlite").equals(first)  # re-run: no duplicates
    ledger.commit(run(e, [ev("Product Added", T0 + 3 * H, user="c", cart="c")], T0 + 5 * H), 3)
    third = _mirror(warehouse, tmp_path / "triggers.sqlite")
    assert list(third["customer_id"]) == ["a", "b", "c"]
    assert str(third["decided_at"].dtype).startswith("datetime64")


def test_mirror_of_a_ledger_that_does_not_exist_yet_is_empty(tmp_path):
    warehouse = DuckDBWarehouse(database=str(tmp_path / "wh.duckdb"))
    assert _mirror(warehouse, tmp_path / "nothing.sqlite").empty


def test_backtest_asset_says_who_would_have_been_messaged(tmp_path):
    warehouse = DuckDBWarehouse(database=str(tmp_path / "wh.duckdb"))
    rows = [  # staged events: lower-case names, flat ids
        ("m1", "track", "product added", "u1", "a1", T0, "c1", None, None),
        ("m2", "track", "product added", "u2", "a2", T0, "c2", None, None),
        ("m3", "track", "order completed", "u2", "a2", T0 + 20 * M, "c2", None, "o2"),
        ("m4", "track", "product added", "u3", "a3", T0, "c3", None, None),
        ("m5", "track", "product added", "u1", "a1", T0 - 48 * H, "c0", None, None),  # before start
    ]
    events = pd.DataFrame(rows, columns=["message_id", "type", "event", "user_id", "anonymous_id",
                                         "timestamp", "cart_id", "checkout_id", "order_id"])
    events["received_at"] = events["timestamp"]
    customers = pd.DataFrame({"customer_key": ["k1", "k2", "k3"], "email_opt_in": [True, True, False],
                              "consent_processing": [True, True, True], "timezone": ["Europe/Berlin"] * 3})
    identity = pd.DataFrame({"identity_type": "user_id", "identity": ["u1", "u2", "u3"],
                             "customer_key": ["k1", "k2", "k3"]})
    with warehouse.connect() as conn:
        conn.insert_frame("staging", "events", events)
        conn.insert_frame("core", "customers", customers)
        conn.insert_frame("core", "identity_map", identity)
    result = dg.materialize([trigger_backtest], resources={"warehouse": warehouse}, run_config={
        "ops": {"activation__trigger_backtest": {"config": {
            "trigger": "cart_abandonment", "start": (T0 - H).isoformat(), "end": (T0 + 24 * H).isoformat()}}}})
    assert result.success
    with warehouse.connect() as conn:
        out = conn.query("select * from activation.trigger_backtest order by customer_id")
    assert list(zip(out["customer_id"], out["cart"], out["outcome"], out["reason"].fillna(""))) == [
        ("u1", "cart_id:c1", "fire", ""), ("u3", "cart_id:c3", "suppress", "no_consent")]
    # 12:00 UTC + 1 h + 2 min lateness: 15:02 in Berlin, outside quiet hours, so sent then
    assert pd.Timestamp(out.loc[0, "send_at"]).tz_localize(None) == pd.Timestamp(T0 + H + 2 * M).tz_localize(None)
    (mat,) = [m for m in result.get_asset_materialization_events()]
    meta = mat.materialization.metadata
    assert meta["would_message"].value == 1 and meta["dagster/row_count"].value == 2
