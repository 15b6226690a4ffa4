"""Segment definitions are validated before any SQL is built."""

from datetime import datetime, timezone

import pytest

from personalization_assets.segments.compiler import compile_rule
from personalization_assets.segments.model import DefinitionError, from_dict, load_builtin, ordered

BASE = {"name": "x", "description": "a test segment", "priority": 1, "refresh": "0 * * * *",
        "rule": {"field": "orders_count", "op": ">=", "value": 1}}
AS_OF = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_builtins_load_with_every_required_part():
    segments = load_builtin()
    assert {s.name for s in segments} == {"cart_abandoners", "browse_abandoners", "high_value",
                                          "at_risk", "new_subscribers", "win_back"}
    for s in segments:
        assert s.description and s.refresh and isinstance(s.priority, int)
        compile_rule(s, AS_OF)  # every rule compiles
    order = [s.name for s in segments]
    assert order.index("cart_abandoners") < order.index("browse_abandoners")
    assert order.index("at_risk") < order.index("win_back")


def test_values_and_windows_become_bind_parameters():
    segment = from_dict({**BASE, "rule": {"all": [
        {"field": "rfm_segment", "op": "in", "value": ["champions", "x'; drop table y; --"]},
        {"field": "last_order_at", "op": "within", "window": "2w"}]}})
    sql, params = compile_rule(segment, AS_OF)
    assert "drop" not in sql and sql.count("?") == 3
    assert params == ["champions", "x'; drop table y; --", datetime(2025, 12, 18, tzinfo=timezone.utc)]


@pytest.mark.parametrize("patch, message", [
    ({"rule": {"field": "password", "op": "=", "value": 1}}, "unknown field 'password'"),
    ({"rule": {"field": "last_order_at", "op": "within", "window": "7 days"}}, "does not match"),
    ({"rule": {"field": "orders_count", "op": "within", "window": "7d"}}, "needs a timestamp field"),
    ({"name": "Bad Name"}, "name"),
    ({"refresh": "often"}, "refresh"),
])
def test_invalid_definitions_say_what_is_wrong(patch, message):
    with pytest.raises(DefinitionError, match=message):
        compile_rule(from_dict({**BASE, **patch}), AS_OF)


def test_exclusions_must_exist_and_not_cycle():
    a = from_dict({**BASE, "name": "a", "exclusions": ["b"]})
    b = from_dict({**BASE, "name": "b", "exclusions": ["a"]})
    with pytest.raises(DefinitionError, match="cycle"):
        ordered([a, b])
    with pytest.raises(DefinitionError, match="unknown segments"):
        ordered([a])
