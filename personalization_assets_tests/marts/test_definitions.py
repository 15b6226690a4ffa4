"""Segment definitions (the audiences that are not triggers) are validated before any SQL is built."""

from datetime import datetime, timezone

import pytest

from personalization_assets.audiences.membership import load_segments, member_sql, run_segments
from personalization_assets.audiences.model import DefinitionError, ordered, parse
from personalization_assets.audiences.sql import predicate_sql

BASE = {"name": "x", "description": "a test segment", "priority": 1, "refresh": "0 * * * *",
        "rule": {"trait": "orders_count", "op": ">=", "value": 1}}
AS_OF = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_builtins_load_with_every_required_part():
    segments = load_segments()
    assert {s.name for s in segments} >= {"cart_abandoners", "browse_abandoners", "high_value",
                                          "at_risk", "new_subscribers", "win_back"}
    assert "cart_abandonment" not in {s.name for s in segments}  # a trigger, run by the stream
    for s in segments:
        assert s.description and s.refresh and isinstance(s.priority, int) and not s.is_trigger
        sql, params = member_sql(s, AS_OF)  # every rule compiles, values bound
        assert sql.count("?") == len(params)
    order = [s.name for s in segments]
    assert order.index("cart_abandoners") < order.index("browse_abandoners")
    assert order.index("at_risk") < order.index("win_back")


def test_values_and_windows_become_bind_parameters():
    segment = parse({**BASE, "rule": {"all": [
        {"trait": "rfm_segment", "op": "in", "value": ["champions", "x'; drop table y; --"]},
        {"trait": "last_order_at", "op": "within", "window": "14d"}]}})
    sql, params = predicate_sql(segment, AS_OF, key="p")
    assert "drop" not in sql and sql.count("?") == 3
    assert params == ["champions", "x'; drop table y; --", datetime(2025, 12, 18, tzinfo=timezone.utc)]


@pytest.mark.parametrize("patch, message", [
    ({"rule": {"trait": "password", "op": "=", "value": 1}}, "unknown trait"),
    ({"rule": {"trait": "last_order_at", "op": "within", "window": "7 days"}}, "bad duration"),
    ({"rule": {"trait": "orders_count", "op": "within", "window": "7d"}}, "needs a timestamp trait"),
    ({"name": "Bad Name"}, "name"),
])
def test_invalid_definitions_say_what_is_wrong(patch, message):
    with pytest.raises(DefinitionError, match=message):
        member_sql(parse({**BASE, **patch}), AS_OF)


def test_exclusions_must_exist_and_not_cycle():
    a = parse({**BASE, "name": "a", "exclusions": ["b"]})
    b = parse({**BASE, "name": "b", "exclusions": ["a"]})
    with pytest.raises(DefinitionError, match="cycle"):
        ordered([a, b])
    with pytest.raises(DefinitionError, match="unknown audiences"):
        ordered([a])


def test_a_run_refuses_an_exclusion_it_does_not_evaluate_first(duck):
    a = parse({**BASE, "name": "a"})
    b = parse({**BASE, "name": "b", "exclusions": ["a"]})
    with pytest.raises(DefinitionError, match=r"segment 'b': excludes \['a'\]"):
        run_segments(duck, [b, a], AS_OF)  # `a` would be excluded before it has members
