"""The stream's timers wait in per-bucket lists until the watermark reaches them; the decisions
(every entry and exit, in order) are the same whatever the bucket width, late events included."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from personalization_assets.audiences.model import parse
from personalization_assets.audiences.stream import AudienceStream, StreamEvent

from .test_equivalence import BASE, audiences, events


def decisions(defs, history, bucket: float, end: float) -> list:
    stream = AudienceStream(defs, timer_bucket=bucket)
    out = []
    for ev in sorted(history, key=lambda e: (e.received, e.ts)):
        out += stream.advance(ev.received)
        out += stream.process(ev)
    out += stream.advance(end)
    assert not stream.timers or min(t[0] for t in stream.timers) >= end - stream.lateness
    return out


@st.composite
def late_events(draw):
    """Some events arrive after the lateness (decided at the watermark, flagged late)."""
    out = draw(events())
    for _ in range(draw(st.integers(0, 3))):
        ts = BASE + 60 * draw(st.integers(0, 120))
        out.append(StreamEvent(ts, draw(st.sampled_from(["k1", "k2"])), "product viewed",
                               ts + draw(st.integers(121, 3600)), {"category": "shoes"}))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=late_events(), defs=audiences())
def test_decisions_do_not_depend_on_the_timer_buckets(history, defs):
    end = BASE + 60 * 400
    one_heap = decisions(defs, history, 1e15, end)  # every timer in one bucket: a plain heap
    assert decisions(defs, history, 60.0, end) == one_heap
    assert decisions(defs, history, 7.0, end) == one_heap
    assert decisions(defs, history, 0.25, end) == one_heap


def test_a_timer_days_ahead_waits_outside_the_heap_and_still_fires():
    defs = [parse({"name": "viewers", "description": "x", "lateness": "2m",
                   "rule": {"event": "product viewed", "exists": True, "within": "7d"}})]
    stream = AudienceStream(defs)
    ev = StreamEvent(BASE, "k1", "product viewed", BASE + 5)
    assert stream.advance(ev.received) == [] and stream.process(ev) == []
    assert [c.change for c in stream.advance(BASE + 300)] == ["entered"]
    assert stream._near == [] and len(stream._far) == 1  # the exit, 7 days ahead, in a bucket
    assert stream.advance(BASE + 7 * 86400) == []  # not yet final: within the lateness
    out = stream.advance(BASE + 7 * 86400 + 121)
    assert [(c.change, c.at) for c in out] == [("exited", BASE + 7 * 86400)]
    assert not stream.timers
