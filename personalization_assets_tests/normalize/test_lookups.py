from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from personalization_assets.demo.generator import generate
from personalization_assets.normalize import LOOKUPS, load_lookup, map_lookup

EVENT_SCHEMAS = Path(__file__).resolve().parents[2] / "personalization_assets" / "schemas" / "events"


@pytest.fixture(scope="module")
def demo():
    return generate(seed=7, scale=0.2, anchor=datetime(2026, 1, 15, tzinfo=timezone.utc))


def test_every_demo_status_category_and_event_maps(demo):
    statuses = pd.Series([o["status"] for o in demo.orders])
    categories = pd.Series([line["category"] for o in demo.orders for line in o["lines"]])
    events = pd.Series([e.get("event") or e["type"] for e in demo.events])
    for values, name in ((statuses, "order_statuses"), (categories, "product_categories"), (events, "event_names")):
        out = map_lookup(values, name)
        assert not out["unmapped"].any(), values[out["unmapped"]].unique()
    # staging lower-cases event names: still the same code
    assert map_lookup(events.str.lower(), "event_names")["value"].tolist() == map_lookup(events, "event_names")["value"].tolist()


def test_every_tracked_segment_event_of_the_schemas_maps():
    names = [json.loads(p.read_text())["properties"]["event"]["const"]
             for p in EVENT_SCHEMAS.glob("*.json") if p.name not in {"registry.json", "common.json"}
             and "event" in json.loads(p.read_text()).get("properties", {})]
    assert len(names) >= 8
    out = map_lookup(pd.Series(names), "event_names")
    assert not out["unmapped"].any()
    assert out["value"].tolist() == [n.lower().replace(" ", "_") for n in names]


@pytest.mark.parametrize("name", LOOKUPS)
def test_seed_tables_are_versioned_and_every_code_maps_to_itself(name):
    lookup = load_lookup(name)
    assert lookup.version == "1"
    assert list(lookup.frame.columns) == ["version", "raw", "code"]
    codes = pd.Series(lookup.codes)
    assert map_lookup(codes, name)["value"].tolist() == lookup.codes


def test_unmapped_values_are_reported_not_passed():
    out = map_lookup(pd.Series([" Delivered ", "CANCELED", "teleported", None]), "order_statuses")
    assert out["value"].tolist() == ["delivered", "cancelled", None, None]
    assert out["unmapped"].tolist() == [False, False, True, False]


def test_an_unknown_lookup_name_is_an_error():
    with pytest.raises(ValueError, match="unknown lookup"):
        load_lookup("colours")
