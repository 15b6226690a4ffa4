"""validate_event: tracking-plan rules, robustness on junk (hypothesis), Snowplow payloads."""

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personalization_assets.quality import Violation, validate_event
from personalization_assets.quality.snowplow import map_snowplow
from personalization_assets_tests.conftest import FIXTURES

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def order(**overrides):
    e = {"type": "track", "event": "Order Completed", "messageId": "m1", "anonymousId": "a1",
         "timestamp": "2026-01-01T11:00:00Z", "context": {},
         "properties": {"order_id": "o1", "total": 12.5, "revenue": 10.0, "currency": "EUR",
                        "products": [{"product_id": "p1", "sku": "s1", "price": 5.0, "quantity": 2}]}}
    e.update(overrides)
    return e


def rules(payload):
    event, violations = validate_event(payload, now=NOW)
    assert (event is None) == bool(violations)
    return {v.rule for v in violations}


def test_valid_event_in_all_encodings():
    e = order()
    for payload in (e, json.dumps(e), json.dumps(e).encode()):
        event, violations = validate_event(payload, now=NOW)
        assert violations == [] and event == e


def test_common_fields():
    assert "order_completed:$" in rules(order(anonymousId=None))  # neither user nor anonymous id
    assert rules(order(anonymousId=None, userId="u1")) == set()
    assert "order_completed:$.messageId" in rules(order(messageId=7))
    assert "common:$" in rules({k: v for k, v in order().items() if k != "type"})  # type is required
    assert "common:$.type" in rules(order(type=None))
    # the collector stamps messageId and timestamp when a client leaves them out (Segment semantics)
    assert rules({k: v for k, v in order().items() if k not in ("messageId", "timestamp")}) == set()
    assert "order_completed:$.context" in rules(order(context="x"))


def test_ecommerce_properties():
    assert "order_completed:$.properties.currency" in rules(order(properties={"order_id": "o", "currency": "eur"}))
    assert "order_completed:$.properties.total" in rules(order(properties={"order_id": "o", "total": "12"}))
    assert "order_completed:$.properties.total" in rules(order(properties={"order_id": "o", "total": -1}))
    assert "order_completed:$.properties" in rules(order(properties={"total": 1}))
    bad_qty = {"order_id": "o", "products": [{"sku": "s", "quantity": 0}]}
    assert "order_completed:$.properties.products[0].quantity" in rules(order(properties=bad_qty))
    viewed = order(event="Product Viewed", properties={"price": 3})  # no product_id nor sku
    assert "product_viewed:$.properties" in rules(viewed)
    assert rules(order(event="Product Viewed", properties={"sku": "s", "price": 3})) == set()


def test_schema_selection():
    assert rules(order(event="Some Custom Event", properties={"anything": [1, {"x": None}]})) == set()
    assert rules({"type": "identify", "userId": "u", "messageId": "m", "timestamp": "2026-01-01T00:00:00Z",
                  "traits": {"email": "a@b.c"}}) == set()
    assert "identify:$.traits" in rules({"type": "identify", "userId": "u", "messageId": "m",
                                         "timestamp": "2026-01-01T00:00:00Z", "traits": []})
    assert "common:$.type" in rules(order(type="bogus"))
    assert rules(order(type="screen", name="Home")) == set()


def test_timestamps():
    skew_ok = (NOW + timedelta(minutes=4)).isoformat()
    too_far = (NOW + timedelta(minutes=6)).isoformat()
    assert rules(order(timestamp=skew_ok)) == set()
    assert rules(order(timestamp=too_far)) == {"order_completed:$.timestamp"}
    assert rules(order(timestamp="yesterday")) == {"order_completed:$.timestamp"}
    assert rules(order(timestamp="2026-01-01T10:00:00")) == {"order_completed:$.timestamp"}  # naive
    # a device clock 1 h fast: judged against its own sentAt (the collector corrects the skew)
    fast = (NOW + timedelta(hours=1)).isoformat()
    assert rules(order(timestamp=fast, sentAt=(NOW + timedelta(hours=1, seconds=2)).isoformat())) == set()
    assert rules(order(timestamp=fast, sentAt=NOW.isoformat())) == {"order_completed:$.timestamp"}
    # stored (server-stamped) events are judged against receivedAt, without `now`
    stored = order(timestamp=fast, receivedAt=NOW.isoformat())
    assert {v.rule for v in validate_event(stored)[1]} == {"order_completed:$.timestamp"}
    assert validate_event(order(timestamp=fast))[1] == []  # raw client event: the collector's job


def test_undecodable_payloads():
    assert rules(b"\xff\xfe{") == {"payload:encoding"}
    assert rules("{not json") == {"payload:json"}
    assert rules("[1, 2]") == {"payload:type"}
    assert rules(42) == {"payload:type"}
    assert rules(None) == {"payload:type"}
    deep = "[" * 100_000 + "]" * 100_000
    assert rules(deep) & {"payload:json", "payload:depth", "payload:type"}


def test_violation_is_frozen():
    v = Violation("r", "m")
    try:
        v.rule = "x"
    except AttributeError:
        pass
    else:
        raise AssertionError("Violation must be frozen")


json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50)
junk_json = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                         max_leaves=20)
field_values = st.one_of(junk_json, st.text(min_size=5000, max_size=6000), st.just("Order Completed"),
                         st.just("track"), st.just("2026-01-01T00:00:00Z"))
keys = st.sampled_from(["type", "event", "messageId", "userId", "anonymousId", "timestamp", "context",
                        "properties", "traits"])
mutated = st.builds(lambda base, edits, drops: {**{k: v for k, v in base.items() if k not in drops}, **edits},
                    st.just(order()), st.dictionaries(keys, field_values, max_size=4), st.sets(keys, max_size=3))
payloads = st.one_of(mutated, junk_json, st.binary(max_size=200), st.text(max_size=200),
                     mutated.map(lambda d: json.dumps(d, default=str)),
                     mutated.map(lambda d: json.dumps(d, default=str).encode() + b"\xc3\x28"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads)
def test_never_raises_and_always_valid_or_violated(payload):
    event, violations = validate_event(payload, now=NOW)
    assert (event is None) != (violations == [])
    assert all(isinstance(v, Violation) and v.rule and v.message for v in violations)
    if event is not None:
        assert isinstance(event, dict)


def test_snowplow_payloads_map_or_report_reason():
    path = FIXTURES / "snowplow-ecommerce-events" / "snowplow_ecommerce_events.csv.gz"
    rows = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
    valid, invalid, unmapped, reasons = 0, 0, 0, set()
    for row in rows:
        event, reason = map_snowplow({k: (v or None) for k, v in row.items()})
        if event is None:
            assert reason
            unmapped += 1
            reasons.add(reason.split(" ")[0])
            continue
        accepted, violations = validate_event(event)
        if accepted:
            assert accepted["event"] in {"Product Viewed", "Product Added", "Product Removed",
                                         "Checkout Started", "Order Completed", "Order Refunded"}
            valid += 1
        else:
            assert violations
            invalid += 1
    assert valid + invalid + unmapped == len(rows) == 834
    assert valid >= 200  # product views, cart adds/removes, first checkout steps, transactions
    assert unmapped >= 410  # rows without any action payload
    assert {"no", "action", "checkout_step"} <= reasons


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated | st.builds(lambda e, p: {**order(event=e), "properties": p},
                           st.sampled_from(["Product Viewed", "Order Completed", "Cart Viewed", "Other"]),
                           st.dictionaries(st.sampled_from(["sku", "product_id", "price", "quantity", "currency",
                                                            "order_id", "products", "total"]),
                                           field_values | st.lists(junk_json | st.just({"sku": "s", "quantity": 1}),
                                                                   max_size=3), max_size=5)))
def test_fast_path_agrees_with_jsonschema(event):
    """The compiled accept-check may never accept what jsonschema rejects (nor the reverse)."""
    from personalization_assets.quality.events import _fast, _validators, schema_name
    name = schema_name(event)
    assert _fast()[name](event) == _validators()[name].is_valid(event)
