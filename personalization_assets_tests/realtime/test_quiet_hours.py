"""Quiet hours (21:00-08:00 local) across time zones and DST: deferred, never dropped.

Expected instants are written out by hand from the zones' published rules, not computed.
"""

from datetime import datetime, time, timezone

from personalization_assets.realtime.definitions import QuietHours
from personalization_assets.realtime.guards import CustomerState
from personalization_assets.realtime.limits import quiet_until

from personalization_assets_tests.realtime.helpers import LATE, H, M, engine, ev, kinds, run, tick


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_same_instant_is_quiet_in_some_zones_and_not_in_others():
    states = {"tokyo": CustomerState(timezone="Asia/Tokyo"), "la": CustomerState(timezone="America/Los_Angeles"),
              "berlin": CustomerState(timezone="Europe/Berlin"), "sydney": CustomerState()}
    e = engine("cart_abandonment", states=states, quiet=True)
    ready = utc(2026, 6, 1, 21, 30)  # 06:30 JST, 14:30 PDT, 23:30 CEST, 07:30 AEST
    events = [ev("Product Added", ready - H - LATE, user=u, cart=u,
                 tz="Australia/Sydney" if u == "sydney" else None) for u in states]
    out = run(e, events, ready)
    assert [d.customer for d in kinds(out)] == ["la"]
    deferred = {d.customer: d.not_before for d in kinds(out, "defer")}
    assert deferred == {"tokyo": utc(2026, 6, 1, 23, 0), "berlin": utc(2026, 6, 2, 6, 0),
                        "sydney": utc(2026, 6, 1, 22, 0)}  # the event's context time zone
    later = tick(e, utc(2026, 6, 2, 12, 0))
    assert {d.customer: d.decided_at for d in kinds(later)} == deferred


def test_a_frontier_jump_that_lands_in_the_next_night_defers_again():
    e = engine("cart_abandonment", states={"t": CustomerState(timezone="Asia/Tokyo")}, quiet=True)
    run(e, [ev("Product Added", utc(2026, 6, 1, 20, 28), user="t", cart="t")], utc(2026, 6, 1, 21, 30))
    out = e.advance(utc(2026, 6, 2, 12, 30))  # 21:30 JST: quiet again, so deferred, not dropped
    assert [d.not_before for d in kinds(out, "defer")] == [utc(2026, 6, 2, 23, 0)]


def test_deferred_messages_fire_when_quiet_hours_end_step_by_step():
    e = engine("cart_abandonment", states={"b": CustomerState(timezone="Europe/Berlin")}, quiet=True)
    out = run(e, [ev("Product Added", utc(2026, 6, 1, 20, 0), user="b", cart="b")], utc(2026, 6, 1, 21, 5))
    assert kinds(out, "defer") and not kinds(out)
    assert kinds(e.advance(utc(2026, 6, 2, 5, 59, 59))) == []
    (fire,) = kinds(e.advance(utc(2026, 6, 2, 6, 0)))
    assert fire.decided_at == utc(2026, 6, 2, 6, 0)


def test_an_order_during_the_deferral_still_cancels():
    e = engine("cart_abandonment", states={"b": CustomerState(timezone="Europe/Berlin")}, quiet=True)
    run(e, [ev("Product Added", utc(2026, 6, 1, 20, 0), user="b", cart="b")], utc(2026, 6, 1, 21, 5))
    out = run(e, [ev("Order Completed", utc(2026, 6, 2, 2, 0), user="b", cart="b")], utc(2026, 6, 3))
    assert kinds(out) == [] and kinds(out, "cancel")


def test_dst_spring_forward_london():
    # 2026-03-29 01:00 GMT -> 02:00 BST: 08:00 local is 07:00 UTC that morning
    e = engine("cart_abandonment", states={"l": CustomerState(timezone="Europe/London")}, quiet=True)
    out = run(e, [ev("Product Added", utc(2026, 3, 28, 21, 28), user="l", cart="l")], utc(2026, 3, 28, 22, 30))
    assert [d.not_before for d in kinds(out, "defer")] == [utc(2026, 3, 29, 7, 0)]
    assert [d.decided_at for d in kinds(tick(e, utc(2026, 3, 29, 9)))] == [utc(2026, 3, 29, 7, 0)]


def test_dst_fall_back_new_york():
    # 2026-11-01 02:00 EDT -> 01:00 EST: 23:00 EDT on Oct 31 is quiet until 08:00 EST = 13:00 UTC
    e = engine("cart_abandonment", states={"n": CustomerState(timezone="America/New_York")}, quiet=True)
    out = run(e, [ev("Product Added", utc(2026, 11, 1, 1, 58), user="n", cart="n")], utc(2026, 11, 1, 3, 0))
    assert [d.not_before for d in kinds(out, "defer")] == [utc(2026, 11, 1, 13, 0)]


def test_quiet_hours_edges_and_a_window_ending_inside_a_dst_gap():
    quiet = QuietHours(time(21, 0), time(8, 0), "UTC")
    assert quiet_until(utc(2026, 6, 1, 20, 59, 59), None, quiet) is None
    assert quiet_until(utc(2026, 6, 1, 21, 0), None, quiet) == utc(2026, 6, 2, 8, 0)
    assert quiet_until(utc(2026, 6, 2, 7, 59), None, quiet) == utc(2026, 6, 2, 8, 0)
    assert quiet_until(utc(2026, 6, 2, 8, 0), None, quiet) is None
    assert quiet_until(utc(2026, 6, 2, 7, 0), "Not/AZone", quiet) == utc(2026, 6, 2, 8, 0)  # default zone
    # 01:30 does not exist in London on 2026-03-29; the window ends at 02:30 BST = 01:30 UTC
    gap = QuietHours(time(22, 0), time(1, 30), "Europe/London")
    assert quiet_until(utc(2026, 3, 29, 0, 30), None, gap) == utc(2026, 3, 29, 1, 30)
    assert quiet_until(utc(2026, 3, 29, 0, 30), None, None) is None
    assert M  # helpers imported for the clock constants
