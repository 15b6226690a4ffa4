"""Raw rows -> staging rows: canonical values beside raw originals; every row valid or quarantined."""

import json
from datetime import datetime, timezone

import pandas as pd

from personalization_assets.assets.raw import EVENT_COLUMNS, ORDER_COLUMNS
from personalization_assets.sources.crm import CUSTOMER_COLUMNS
from personalization_assets.staging import stage_customers, stage_events, stage_orders

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
LOADED = pd.Timestamp("2026-05-31T12:00:00Z")


def _order(order_id, *, currency="EUR", total="20.00", status="paid", lines=None, customer=None,
           created="2026-05-30T10:00:00+02:00"):
    lines = lines if lines is not None else [
        {"line_no": 1, "sku": "A", "name": "Mug", "category": "Accessories", "quantity": 2, "unit_price": "10.00"}]
    return {"order_id": order_id, "customer_id": customer, "email": "Guest@Example.org", "status": status,
            "currency": currency, "total": total, "created_at": created, "updated_at": created,
            "cart_id": None, "checkout_id": None, "lines": json.dumps(lines), "payload": "{}", "loaded_at": LOADED}


def test_orders_in_equal_valid_plus_quarantined_with_reasons():
    raw = pd.DataFrame([
        _order("ok"),
        _order("jpy", currency="JPY", total="2000", lines=[
            {"line_no": 1, "sku": "B", "name": "Tea", "category": "accessories", "quantity": 1, "unit_price": "2000"}]),
        _order("no-fx", currency="HUF", total="2000.00", lines=[
            {"line_no": 1, "sku": "B", "name": "Tea", "category": "accessories", "quantity": 1, "unit_price": "2000.00"}]),
        _order("bad-json") | {"lines": "{not json"},
        _order("bad-status", status="teleported"),
        _order("mismatch", total="25.00"),
        _order("unknown-customer", customer="404"),
        _order("weighed", lines=[{"line_no": 1, "sku": "C", "name": "Kettlebell", "category": "sports", "quantity": 1,
                                  "unit_price": "20.00", "weight": "2.5", "weight_unit": "lb",
                                  "length": 12, "length_unit": "cm"}]),
    ], columns=ORDER_COLUMNS)
    staged = stage_orders(raw, known_customers=pd.Series(["1"]), now=NOW)
    rules = dict(zip(staged.quarantined["record_id"], staged.quarantined["rule"]))
    assert set(staged.orders["order_id"]) == {"ok", "jpy", "weighed"}
    assert rules == {"no-fx": "orders.fx_rate", "bad-json": "orders.lines_json", "bad-status": "orders.status_known",
                     "mismatch": "orders.total_matches_lines", "unknown-customer": "orders.unknown_customer"}
    assert len(staged.orders) + len(staged.quarantined) == len(raw)
    ok = staged.orders.set_index("order_id")
    assert ok.loc["ok", "total_minor"] == 2000 and ok.loc["jpy", "total_minor"] == 2000  # yen has no minor unit
    assert ok.loc["ok", "total_reporting_minor"] == 2000 and ok.loc["jpy", "total_reporting_minor"] > 0
    assert ok.loc["ok", "created_at"] == pd.Timestamp("2026-05-30T08:00:00Z")
    assert ok.loc["ok", "email"] == "guest@example.org" and ok.loc["ok", "email_raw"] == "Guest@Example.org"
    assert bool(ok.loc["ok", "is_guest"])
    assert "HUF" in staged.quarantined.set_index("record_id").loc["no-fx", "message"]
    json.loads(staged.quarantined.set_index("record_id").loc["bad-json", "raw_payload"])  # the raw row, as JSON
    lines = staged.lines.set_index("order_id")
    assert lines.loc["ok", "category"] == "accessories" and lines.loc["ok", "category_raw"] == "Accessories"
    assert pd.isna(lines.loc["ok", "weight_g"])  # no weight sent: none invented
    assert lines.loc["weighed", "weight_g"] == 1133.980925 and lines.loc["weighed", "weight_raw"] == "2.5 lb"
    assert lines.loc["weighed", "length_mm"] == 120


def test_empty_inputs_give_typed_tables():
    customers = stage_customers(pd.DataFrame(columns=CUSTOMER_COLUMNS), now=NOW).valid
    orders = stage_orders(pd.DataFrame(columns=ORDER_COLUMNS), known_customers=pd.Series([], dtype=str), now=NOW)
    events = stage_events(pd.DataFrame(columns=EVENT_COLUMNS), now=NOW).valid
    assert str(customers["created_at"].dtype) == "datetime64[ns, UTC]" and customers["email_opt_in"].dtype == bool
    assert orders.orders["total_minor"].dtype == "int64" and str(orders.lines["loaded_at"].dtype).endswith("UTC]")
    assert str(events["received_at"].dtype) == "datetime64[ns, UTC]"


def test_events_map_names_and_keep_exact_minor_units():
    def row(mid, payload):
        return {"message_id": mid, "bus_offset": 1, "received_at": pd.Timestamp("2026-05-31T10:00:00Z"),
                "payload": json.dumps(payload)}

    base = {"type": "track", "userId": "u1", "timestamp": "2026-05-31T09:59:00Z"}
    raw = pd.DataFrame([
        row("a", base | {"messageId": "a", "event": "Product Added",
                         "properties": {"price": "1999", "currency": "jpy", "sku": 7}}),
        row("b", base | {"messageId": "b", "event": "Teleported"}),
        row("c", {"type": "track", "event": "Product Added", "timestamp": "2026-05-31T09:59:00Z"}),
        row("d", "not an object"),
        row("a", base | {"messageId": "a", "event": "Product Added"}),  # a second arrival: dropped
    ], columns=EVENT_COLUMNS)
    staged = stage_events(raw, now=NOW)
    valid = staged.valid.set_index("message_id")
    assert valid.loc["a", "event_code"] == "product_added" and valid.loc["a", "event_raw"] == "Product Added"
    assert valid.loc["a", "value_minor"] == 1999 and valid.loc["a", "currency"] == "JPY"
    assert valid.loc["a", "sku"] == "7"
    assert pd.isna(valid.loc["b", "event_code"]) and staged.unmapped == {"event_names": {"Teleported": 1}}
    assert dict(zip(staged.quarantined["record_id"], staged.quarantined["rule"])) == {
        "c": "events.identity", "d": "events.payload"}
