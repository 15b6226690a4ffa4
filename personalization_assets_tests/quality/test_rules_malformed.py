"""Hypothesis junk through the business rules: they never raise, and every row ends up valid or
quarantined (count in = valid + quarantined)."""

import json
from datetime import datetime, timezone

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personalization_assets.quality.rules import apply_customer_rules, apply_order_rules

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
ORDER_COLUMNS = ["order_id", "customer_record_id", "is_guest", "status", "currency", "total_minor", "created_at"]
LINE_COLUMNS = ["order_id", "line_no", "sku", "quantity", "unit_price_minor", "line_total_minor"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.binary(max_size=8),  # bytes: b"\xff"
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "\ud800", "é "]), st.integers(1000, 100_000)),  # huge;
    # a lone surrogate is text that is not valid UTF-8
    st.sampled_from(["o1", "o2", "paid", "EUR", "crm:1", "2025-12-01T00:00:00Z", "9999-99-99", ""]),
    st.datetimes(timezones=st.just(timezone.utc)),
)
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)
plausible = {
    "order_id": st.sampled_from(["o1", "o2", "o3"]), "customer_record_id": st.sampled_from([None, "crm:1", "crm:9"]),
    "is_guest": st.booleans(), "status": st.sampled_from(["paid", "lost"]), "currency": st.sampled_from(["EUR", "ZZZ"]),
    "total_minor": st.integers(-10, 2000), "created_at": st.just(pd.Timestamp("2025-12-01", tz="UTC")),
    "line_no": st.integers(0, 3), "sku": st.just("S"), "quantity": st.integers(-1, 3),
    "unit_price_minor": st.integers(-1, 500), "line_total_minor": st.integers(-1, 1000),
}


def rows(columns):
    """Rows that mostly look right, with junk values and missing keys mixed in."""
    value = {c: st.one_of(plausible[c], plausible[c], junk) for c in columns}
    return st.lists(st.fixed_dictionaries({}, optional=value), max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows(ORDER_COLUMNS), rows(LINE_COLUMNS))
def test_order_rules_never_raise_and_account_for_every_row(order_rows, line_rows):
    orders, lines = pd.DataFrame(order_rows), pd.DataFrame(line_rows)  # a key absent from every row: a missing column
    result = apply_order_rules(orders, lines, known_customer_ids={"crm:1"}, known_statuses={"paid"}, now=NOW)
    rejected = result.rejections
    orphans = rejected[rejected["rule"] == "order_lines.orphan"]
    assert len(orders) == len(result.orders) + len(rejected) - len(orphans)
    valid_ids = set(result.orders["order_id"]) if len(result.orders) else set()
    line_ids = lines["order_id"] if "order_id" in lines.columns else pd.Series([None] * len(lines))
    rejected_ids = set(rejected.loc[rejected["rule"] != "order_lines.orphan", "record_id"])
    dropped_with_order = line_ids.map(lambda v: isinstance(v, str) and v not in valid_ids and v in rejected_ids)
    assert len(lines) == len(result.lines) + int(dropped_with_order.sum()) + len(orphans)
    if len(result.lines):
        assert set(result.lines["order_id"]) <= valid_ids
    for record in rejected.itertuples():
        assert record.record_id and record.rule and record.message
        json.loads(record.raw_payload)


@settings(max_examples=60, deadline=None)
@given(rows_=st.lists(st.fixed_dictionaries({}, optional={"record_id": junk, "email": st.one_of(st.emails(), junk),
                                                            "created_at": junk}), max_size=8))
def test_customer_rules_never_raise_and_account_for_every_row(rows_):
    customers = pd.DataFrame(rows_)
    result = apply_customer_rules(customers, now=NOW)
    assert len(customers) == len(result.valid) + len(result.rejections)
    assert result.rejections["record_id"].map(lambda v: isinstance(v, str) and v != "").all()


def test_text_that_is_not_utf8_in_an_all_text_column():
    orders = pd.DataFrame({"order_id": ["o1", "o\ud800", " "], "customer_record_id": [None] * 3, "is_guest": True,
                           "status": "paid", "currency": "EUR", "total_minor": 0,
                           "created_at": pd.Timestamp("2025-12-01", tz="UTC")})
    lines = pd.DataFrame({"order_id": ["o\ud800"], "line_no": [1], "sku": ["\udfff"], "quantity": [1],
                          "unit_price_minor": [0], "line_total_minor": [0]})
    result = apply_order_rules(orders, lines, known_customer_ids=set(), known_statuses={"paid"}, now=NOW)
    assert list(result.orders["order_id"]) == ["o1", "o\ud800"] and len(result.lines) == 1
    assert list(result.rejections["rule"]) == ["orders.required"]  # the blank id
