"""The stream routes an event to the slots whose filter it passes: slots filtered on one property
are found by a lookup of the event's value, the others by their test; the same slots either way."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from personalization_assets.audiences.model import ComputedTrait, EventFilter, Window
from personalization_assets.audiences.stream import StreamEvent, _ingest, trait_at
from personalization_assets.audiences.stream_plan import _Builder, _where_test

VALUES = ["shoes", "it's", None, 1, 1.0, "select"]


def filters():
    where = st.lists(st.tuples(st.sampled_from(["category", "brand"]),
                               st.lists(st.sampled_from(VALUES), min_size=1, max_size=3).map(tuple)),
                     max_size=2, unique_by=lambda cv: cv[0]).map(tuple)
    return st.builds(EventFilter, st.just(("product viewed",)), where)


@settings(max_examples=200, deadline=None)
@given(fs=st.lists(filters(), min_size=1, max_size=6),
       props=st.dictionaries(st.sampled_from(["category", "brand"]), st.sampled_from(VALUES)))
def test_an_event_goes_into_exactly_the_slots_whose_filter_it_passes(fs, props):
    b = _Builder([])
    sids = [b.slot(f, None) for f in fs]
    slots: dict = {}
    touched = _ingest(slots, b.plan.routes.get("product viewed"), StreamEvent(0.0, "k", "product viewed", 0.0, props))
    expected = {sid for sid, f in zip(sids, fs) if (test := _where_test(f)) is None or test(props)}
    assert sorted(touched) == sorted(expected) and set(slots) == expected


def test_slots_filtered_on_one_property_are_found_by_its_value():
    b = _Builder([])
    shoes = b.slot(EventFilter(("product viewed",), (("category", ("shoes", "bags")),)), None)
    hats = b.slot(EventFilter(("product viewed",), (("category", ("hats",)),)), "value_minor")
    route = b.plan.routes["product viewed"]
    assert route.tested == []
    assert route.keyed["category"] == {"shoes": [(shoes, None, None)], "bags": [(shoes, None, None)],
                                       "hats": [(hats, None, "value_minor")]}


def test_a_computed_trait_counts_only_the_events_of_its_value():
    trait = ComputedTrait("views", "count", EventFilter(("product viewed",), (("category", ("shoes",)),)),
                          Window(0.0, None))
    evs = [StreamEvent(float(i), "k", "product viewed", float(i), {"category": c})
           for i, c in enumerate(["shoes", "hats", "shoes", None])]
    assert trait_at(trait, evs, 10.0) == 2
