"""Segment rules on small hand-built histories, at the edges of every window (in-memory DuckDB)."""

from datetime import timedelta

import pytest

from personalization_assets.audiences import suppression
from personalization_assets.audiences.membership import load_segments, run_segments
from personalization_assets.audiences.model import parse
from personalization_assets.marts.profiles import build_profiles, write_profiles

from .conftest import NOW, History, ago

SEGMENTS = load_segments()
SECOND = timedelta(seconds=1)


def members(conn, history: History, as_of=NOW) -> set[tuple[str, str]]:
    history.write(conn)
    write_profiles(conn, build_profiles(conn, as_of).frame)
    run_segments(conn, SEGMENTS, as_of)
    rows = conn.query("select segment, customer_key from marts.segment_membership")
    return set(zip(rows["segment"], rows["customer_key"]))


def in_segment(result, segment):
    return {key for seg, key in result if seg == segment}


def test_cart_abandoners_window_edges(duck):
    h = History()
    for key, carted in {"at_7d": ago(days=7), "past_7d": ago(days=7) - SECOND,
                        "at_1h": ago(hours=1), "inside_1h": ago(hours=1) + SECOND}.items():
        h.customer(key)
        h.event(key, "Product Added", carted, cart_id=f"c-{key}")
    h.customer("ordered_after")
    h.event("ordered_after", "product added", ago(days=2))
    h.order("ordered_after", ago(days=1))
    h.customer("ordered_before")
    h.order("ordered_before", ago(days=3))
    h.event("ordered_before", "product added", ago(days=2))
    assert in_segment(members(duck, h), "cart_abandoners") == {"at_7d", "at_1h", "ordered_before"}


def test_browse_abandoners_window_edges_and_exclusion(duck):
    h = History()
    for key, viewed in {"at_3d": ago(days=3), "past_3d": ago(days=3) - SECOND,
                        "at_2h": ago(hours=2), "inside_2h": ago(hours=2) + SECOND}.items():
        h.customer(key)
        h.event(key, "Product Viewed", viewed)
    h.customer("then_carted")  # viewed, then carted: a cart abandoner, not a browse abandoner
    h.event("then_carted", "Product Viewed", ago(days=1))
    h.event("then_carted", "Product Added", ago(hours=20))
    h.customer("then_ordered")
    h.event("then_ordered", "Product Viewed", ago(days=1))
    h.order("then_ordered", ago(hours=5))
    result = members(duck, h)
    assert in_segment(result, "browse_abandoners") == {"at_3d", "at_2h"}
    assert in_segment(result, "cart_abandoners") == {"then_carted"}


def test_new_subscribers_window_edges(duck):
    h = History()
    h.customer("at_14d", created_at=ago(days=14))
    h.customer("past_14d", created_at=ago(days=14) - SECOND)
    h.customer("bought", created_at=ago(days=2))
    h.order("bought", ago(days=1))
    assert in_segment(members(duck, h), "new_subscribers") == {"at_14d"}


def test_at_risk_and_win_back_edges(duck):
    h = History()
    last = {"at_90d": ago(days=90), "inside_90d": ago(days=90) + SECOND,
            "at_180d": ago(days=180), "past_180d": ago(days=180) - SECOND,
            "at_730d": ago(days=730), "past_730d": ago(days=730) - SECOND}
    for key, when in last.items():
        h.customer(key)
        h.order(key, when - timedelta(days=30))
        h.order(key, when)
    h.customer("one_order_120d")  # a single order is not "at risk" (never a repeat buyer)
    h.order("one_order_120d", ago(days=120))
    h.customer("one_order_200d")
    h.order("one_order_200d", ago(days=200))
    result = members(duck, h)
    assert in_segment(result, "at_risk") == {"at_90d", "at_180d"}
    # at_180d also matches win-back's window but at_risk wins: win-back excludes it.
    assert in_segment(result, "win_back") == {"past_180d", "at_730d", "one_order_200d"}


def test_high_value_top_quintile_within_a_year(duck):
    h = History()
    for i, spend in enumerate([1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000]):
        h.customer(f"c{i}")
        h.order(f"c{i}", ago(days=20), total_minor=spend)
    h.customer("whale_at_365d")
    h.order("whale_at_365d", ago(days=365), total_minor=90_000)
    result = in_segment(members(duck, h), "high_value")
    assert result == {"whale_at_365d", "c8"}  # 10 buyers: the top 2 by spend have m_score 5


def test_high_value_excludes_a_year_and_a_second(duck):
    h = History()
    for i, spend in enumerate([1000, 2000, 3000, 4000]):
        h.customer(f"c{i}")
        h.order(f"c{i}", ago(days=20), total_minor=spend)
    h.customer("whale")
    h.order("whale", ago(days=365) - SECOND, total_minor=90_000)
    assert "whale" not in in_segment(members(duck, h), "high_value")


def suppressed_history() -> History:
    h = History()
    h.customer("ok")
    h.customer("unsubscribed", email_opt_in=False)
    h.customer("no_consent", consent_processing=False)
    h.customer("no_email", email=None)
    h.customer("bounced")
    h.suppress("bounced", email="bounced@example.com")
    h.customer("listed")
    h.suppress("unsubscribed", key="listed")
    h.customer("complained")
    h.email_event("complained", "spamreport", ago(days=1))
    h.email_event("ok", "open", ago(days=1))
    for key in ("ok", "unsubscribed", "no_consent", "no_email", "bounced", "listed", "complained"):
        h.event(key, "Product Added", ago(hours=3))
    return h


def test_suppressed_customers_are_never_members(duck):
    result = members(duck, suppressed_history())
    assert in_segment(result, "cart_abandoners") == {"ok"}
    reasons = dict(suppression.suppressed_customers(duck).itertuples(index=False))
    assert reasons == {"unsubscribed": "unsubscribed", "no_consent": "no_consent", "no_email": "no_email",
                       "bounced": "bounced", "listed": "unsubscribed", "complained": "complained"}
    count, _ = suppression.violations(duck, [s.name for s in SEGMENTS])
    assert count == 0


def test_violation_check_catches_a_suppressed_member(duck):
    members(duck, suppressed_history())
    duck.execute("insert into marts.segment_membership values ('cart_abandoners', 'complained', ?)", [NOW])
    count, examples = suppression.violations(duck, [s.name for s in SEGMENTS])
    assert count == 1
    assert examples.to_dict("records") == [
        {"segment": "cart_abandoners", "customer_key": "complained", "reason": "complained"}]


def test_changes_entered_exited_and_since_carried_over(duck):
    h = History()
    h.customer("alice")
    h.event("alice", "Product Added", ago(hours=3))
    h.write(duck)
    runs = []
    for as_of in (NOW, NOW + timedelta(minutes=15), NOW + timedelta(minutes=15), NOW + timedelta(days=8)):
        write_profiles(duck, build_profiles(duck, as_of).frame)
        runs.append(run_segments(duck, SEGMENTS, as_of))
        if as_of == NOW + timedelta(minutes=15):
            since = duck.query("select since from marts.segment_membership where customer_key = 'alice'")
            assert since.iat[0, 0] == NOW  # member without interruption since the first run
    assert [r.entered["cart_abandoners"] for r in runs] == [1, 0, 0, 0]
    assert [r.exited["cart_abandoners"] for r in runs] == [0, 0, 0, 1]
    changes = duck.query("select segment, customer_key, change from marts.segment_changes order by run_at")
    assert changes.values.tolist() == [["cart_abandoners", "alice", "entered"],
                                       ["cart_abandoners", "alice", "exited"]]


def test_same_sql_gives_same_membership_on_fakesnow(duck, snow):
    h = suppressed_history()
    h.customer("lapsed")
    h.order("lapsed", ago(days=100))
    h.order("lapsed", ago(days=200))
    h.customer("viewer")
    h.event("viewer", "Product Viewed", ago(hours=5))
    on_duck, on_snow = members(duck, h), members(snow, h)
    assert on_duck == on_snow
    assert {seg for seg, _ in on_duck} == {"cart_abandoners", "at_risk", "browse_abandoners"}


def test_an_audience_with_event_conditions_runs_as_a_segment(duck):
    h = History()
    for key, views in {"three_recent": [ago(days=1), ago(days=2), ago(days=6)],
                       "two_recent": [ago(days=1), ago(days=2)],
                       "three_old": [ago(days=8), ago(days=9), ago(days=10)]}.items():
        h.customer(key)
        for at in views:
            h.event(key, "product viewed", at, category="shoes")
    h.customer("other_category")
    for days in (1, 2, 3):
        h.event("other_category", "product viewed", ago(days=days), category="bags")
    h.write(duck)
    for column, kind in (("received_at", "timestamptz"), ("checkout_id", "varchar"), ("order_id", "varchar")):
        duck.execute(f"alter table staging.events add column {column} {kind}")
    duck.execute("update staging.events set received_at = timestamp")
    write_profiles(duck, build_profiles(duck, NOW).frame)
    viewers = parse({"name": "shoe_viewers", "description": "viewed shoes 3 times in a week",
                     "rule": {"event": "product viewed", "where": {"category": "shoes"}, "count": ">= 3",
                              "within": "7d"}})
    run = run_segments(duck, [viewers], NOW)
    rows = duck.query("select segment, customer_key from marts.segment_membership")
    assert set(zip(rows["segment"], rows["customer_key"])) == {("shoe_viewers", "three_recent")}
    assert run.sizes == {"shoe_viewers": 1}
