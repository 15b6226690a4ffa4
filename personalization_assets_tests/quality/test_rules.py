"""Business rules on small staged frames: each rule fires alone, the rest pass, counts add up."""

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from personalization_assets.quality.rules import (
    CUSTOMER_RULES, LINE_RULES, ORDER_RULES, apply_customer_rules, apply_order_rules, rules_table,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
STATUSES = {"paid", "shipped", "delivered", "cancelled"}
CUSTOMERS = {"crm:1", "crm:2"}


def orders_frame(n: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n valid orders (o0..), each with two lines of 250 x 2 minor units."""
    orders = pd.DataFrame({
        "order_id": [f"o{i}" for i in range(n)],
        "customer_record_id": ["crm:1"] * n,
        "is_guest": [False] * n,
        "email": ["a@example.com"] * n,
        "status": ["paid"] * n,
        "currency": ["EUR"] * n,
        "total_minor": [1000] * n,
        "created_at": pd.to_datetime([NOW - timedelta(days=1)] * n, utc=True),
    })
    lines = pd.DataFrame({
        "order_id": [f"o{i}" for i in range(n) for _ in (1, 2)],
        "line_no": [k for _ in range(n) for k in (1, 2)],
        "sku": ["SKU-1", "SKU-2"] * n,
        "quantity": [2, 2] * n,
        "unit_price_minor": [250, 250] * n,
        "line_total_minor": [500, 500] * n,
        "currency": ["EUR"] * (2 * n),
    })
    return orders, lines


def run(orders, lines):
    return apply_order_rules(orders, lines, known_customer_ids=CUSTOMERS, known_statuses=STATUSES, now=NOW)


def test_valid_orders_pass_untouched():
    orders, lines = orders_frame()
    result = run(orders, lines)
    pd.testing.assert_frame_equal(result.orders, orders)
    pd.testing.assert_frame_equal(result.lines, lines)
    assert result.rejections.empty


ORDER_BREAKS = {
    "orders.required": {"status": None},
    "orders.status_known": {"status": "teleported"},
    "orders.currency_iso4217": {"currency": "EURO"},
    "orders.total_non_negative": {"total_minor": -1000},
    "orders.created_at_not_future": {"created_at": pd.Timestamp(NOW + timedelta(hours=1))},
    "orders.unknown_customer": {"customer_record_id": "crm:404"},
    "orders.customer_or_guest": {"customer_record_id": None, "is_guest": False},
    "orders.total_matches_lines": {"total_minor": 1003},
}


@pytest.mark.parametrize("rule", sorted(ORDER_BREAKS))
def test_each_order_rule_fires_alone(rule):
    orders, lines = orders_frame()
    for column, value in ORDER_BREAKS[rule].items():
        orders[column] = orders[column].astype(object)
        orders.at[1, column] = value
    result = run(orders, lines)
    assert list(result.rejections["rule"]) == [rule]
    assert list(result.rejections["record_id"]) == ["o1"]
    assert list(result.orders["order_id"]) == ["o0", "o2"]
    assert set(result.lines["order_id"]) == {"o0", "o2"}  # the rejected order's lines drop with it
    assert len(orders) == len(result.orders) + len(result.rejections)
    payload = json.loads(result.rejections["raw_payload"].iloc[0])
    assert payload["order_id"] == "o1" and len(payload["lines"]) == 2


def test_rounding_tolerance_is_one_minor_unit_per_line():
    orders, lines = orders_frame()
    orders.loc[0, "total_minor"] = 1002  # two lines: within tolerance
    orders.loc[1, "total_minor"] = 998
    orders.loc[2, "total_minor"] = 1003
    assert list(run(orders, lines).rejections["record_id"]) == ["o2"]


def test_guest_order_without_customer_passes():
    orders, lines = orders_frame()
    orders["customer_record_id"] = orders["customer_record_id"].astype(object)
    orders.loc[0, ["customer_record_id", "is_guest"]] = [None, True]
    assert run(orders, lines).rejections.empty


LINE_BREAKS = {
    "order_lines.required": {"sku": None},
    "order_lines.quantity_positive": {"quantity": 0},
    "order_lines.amounts_non_negative": {"unit_price_minor": -5},
    "order_lines.unique_line_no": {"line_no": 1},
}


@pytest.mark.parametrize("rule", sorted(LINE_BREAKS))
def test_a_bad_line_drops_its_whole_order(rule):
    orders, lines = orders_frame()
    for column, value in LINE_BREAKS[rule].items():
        lines[column] = lines[column].astype(object)
        lines.at[3, column] = value  # second line of o1
    result = run(orders, lines)
    assert list(result.rejections["rule"]) == [rule]
    assert list(result.rejections["record_id"]) == ["o1"]
    assert result.rejections["message"].iloc[0].startswith(f"line {lines.at[3, 'line_no']}:")
    assert "o1" not in set(result.lines["order_id"])
    assert len(result.lines) == 4


def test_orphan_lines_are_quarantined_not_dropped():
    orders, lines = orders_frame(2)
    lines = pd.concat([lines, lines.iloc[[0]].assign(order_id="o-missing")], ignore_index=True)
    result = run(orders, lines)
    assert list(zip(result.rejections["record_id"], result.rejections["rule"])) == [("o-missing", "order_lines.orphan")]
    assert len(result.orders) == 2 and len(result.lines) == 4


def test_duplicate_order_keeps_first_row():
    orders, lines = orders_frame(2)
    orders = pd.concat([orders, orders.iloc[[0]]], ignore_index=True)
    result = run(orders, lines)
    assert list(result.rejections["rule"]) == ["orders.unique_order_id"]
    assert len(result.orders) == 2


def test_missing_column_quarantines_every_row_with_reason():
    orders, lines = orders_frame()
    result = run(orders.drop(columns=["status"]), lines)
    assert result.orders.empty and result.lines.empty
    assert set(result.rejections["rule"]) == {"orders.required"}
    assert result.rejections["message"].str.contains("column missing: status").all()


def test_first_failing_rule_wins_and_reprocessing_gives_same_ids():
    orders, lines = orders_frame()
    orders["status"] = orders["status"].astype(object)
    orders.loc[1, ["status", "total_minor"]] = ["??", -1]
    first, second = run(orders, lines), run(orders, lines)
    assert list(first.rejections["rule"]) == ["orders.status_known"]
    pd.testing.assert_frame_equal(first.rejections, second.rejections)


def test_nullable_dtypes_are_read_like_numpy_ones():
    orders, lines = orders_frame()
    orders = orders.astype({"total_minor": "Int64", "status": "string", "currency": "string"})
    orders.loc[1, "total_minor"] = pd.NA
    orders.loc[2, "status"] = "  "
    lines = lines.astype({"quantity": "Int64", "unit_price_minor": "Int64", "line_total_minor": "Int64"})
    result = run(orders, lines)
    assert dict(zip(result.rejections["record_id"], result.rejections["rule"])) == {
        "o1": "orders.required", "o2": "orders.required"}
    assert list(result.orders["order_id"]) == ["o0"]


def customers_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "record_id": ["crm:1", "crm:2", "crm:3", "crm:4"],
        "email": ["ann@example.com", "not-an-email", None, "bob@example.org"],
        "created_at": pd.to_datetime([NOW - timedelta(days=3), NOW, NOW, NOW + timedelta(days=2)], utc=True),
    })


def test_customer_rules():
    result = apply_customer_rules(customers_frame(), now=NOW)
    assert list(result.valid["record_id"]) == ["crm:1"]
    assert dict(zip(result.rejections["record_id"], result.rejections["rule"])) == {
        "crm:2": "customers.email_valid", "crm:3": "customers.required", "crm:4": "customers.created_at_not_future"}


def test_created_at_within_clock_skew_passes():
    frame = customers_frame().iloc[[0]].assign(created_at=pd.Timestamp(NOW + timedelta(minutes=4)))
    assert len(apply_customer_rules(frame, now=NOW).valid) == 1


def test_rules_are_listed_once_with_their_columns():
    table = rules_table()
    names = [r["rule"] for r in table]
    assert len(names) == len(set(names)) == len(CUSTOMER_RULES) + len(ORDER_RULES) + len(LINE_RULES)
    assert all(r["description"] and r["columns"] for r in table)
