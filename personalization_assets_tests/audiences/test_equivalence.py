"""SQL and stream compilations of the same audiences agree at every instant (property test)."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from personalization_assets.audiences.equivalence import compare, interesting_instants
from personalization_assets.audiences.model import parse
from personalization_assets.audiences.stream import StreamEvent

from .helpers import DuckQuery

BASE = 1_767_225_600.0  # 2026-01-01 UTC
LATENESS = 120.0
NAMES = ["product viewed", "product added", "order completed"]
CATEGORIES = ["shoes", "it's", "Straße", "select"]


@st.composite
def events(draw):
    out = []
    for _ in range(draw(st.integers(0, 12))):
        # whole minutes, or with the sub-microsecond digits of epoch(timestamptz) as a double
        ts = BASE + 60 * draw(st.integers(0, 120)) + draw(st.sampled_from([0.0, 0.0, 0.3840492, 59.9999997]))
        props = {"category": draw(st.sampled_from(CATEGORIES + [None])),
                 "value_minor": draw(st.one_of(st.none(), st.integers(0, 500)))}
        out.append(StreamEvent(ts, draw(st.sampled_from(["k1", "k2", "k3"])), draw(st.sampled_from(NAMES)),
                               ts + draw(st.integers(0, int(LATENESS))),
                               {k: v for k, v in props.items() if v is not None}))
    return out


def window(draw):
    if draw(st.booleans()):
        return {"within": f"{draw(st.integers(1, 90))}m"}
    a = draw(st.integers(0, 40))
    return {"between": [f"{a}m", f"{a + draw(st.integers(1, 60))}m"]}


@st.composite
def condition(draw, traits):
    kind = draw(st.sampled_from(["count", "sum", "exists", "abandon", "computed"]))
    cond = {"event": draw(st.sampled_from(NAMES)), **window(draw)}
    if draw(st.booleans()):
        cond["where"] = {"category": draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2))}
    if kind == "count":
        cond["count"] = f"{draw(st.sampled_from(['>=', '>', '<', '=', '!=']))} {draw(st.integers(0, 3))}"
    elif kind == "sum":
        cond.update({"sum": "value_minor", "is": f">= {draw(st.integers(0, 600))}"})
    elif kind == "exists":
        cond["exists"] = draw(st.booleans())
    elif kind == "abandon":
        follow = {"event": draw(st.sampled_from(NAMES))}
        if draw(st.booleans()):
            follow["within"] = f"{draw(st.integers(1, 60))}m"
        cond.update({"exists": True, "not_followed_by": follow})
    else:
        name = f"t{len(traits)}"
        tk = draw(st.sampled_from(["count", "sum", "last", "most_frequent"]))
        trait = {"count": draw(st.sampled_from(NAMES))} if tk == "count" else \
            {tk: "value_minor" if tk == "sum" else "category", "of": draw(st.sampled_from(NAMES))}
        if draw(st.booleans()):
            trait.update(window(draw))
        traits[name] = trait
        value = draw(st.integers(0, 300)) if tk in ("count", "sum") else draw(st.sampled_from(CATEGORIES))
        op = draw(st.sampled_from(["=", "!="] if tk in ("last", "most_frequent") else [">=", "<", "="]))
        return {"computed": name, "op": op, "value": value}
    return cond


@st.composite
def audiences(draw):
    out = []
    for i in range(draw(st.integers(1, 2))):
        traits: dict = {}
        parts = draw(st.lists(condition(traits), min_size=1, max_size=3))
        rule = parts[0] if len(parts) == 1 else {draw(st.sampled_from(["all", "any"])): parts}
        doc = {"name": f"a{i}", "description": "generated", "lateness": "2m", "traits": traits, "rule": rule}
        if i == 1 and draw(st.booleans()):
            doc["exclusions"] = ["a0"]
        out.append(parse(yaml.safe_load(yaml.safe_dump(doc)), origin="generated"))
    return out


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=events(), defs=audiences())
def test_sql_and_stream_agree_at_every_instant(history, defs):
    end = BASE + 60 * 200
    instants = interesting_instants(history, defs, BASE, end, limit=10_000)
    instants += [t - 0.5 for t in instants]  # and just before every change
    report = compare(DuckQuery(history), defs, history, instants)
    assert report.disagreements.empty, report.disagreements.head(10).to_string()


def test_late_event_is_a_disagreement_with_its_reason():
    defs = [parse({"name": "viewers", "description": "x", "lateness": "2m",
                   "rule": {"event": "product viewed", "exists": True, "within": "30m"}})]
    late = StreamEvent(BASE + 60, "k1", "product viewed", BASE + 60 + 600)  # 10 min late
    on_time = StreamEvent(BASE, "k2", "product viewed", BASE + 30)
    history = [late, on_time]
    report = compare(DuckQuery(history), defs, history, [BASE + 120, BASE + 1000])
    rows = report.disagreements
    assert list(rows["customer_key"]) == ["k1"] and list(rows["reason"]) == ["late_event"]
    assert rows["in_sql"].iloc[0] and not rows["in_stream"].iloc[0]
    assert report.unexplained == 0
