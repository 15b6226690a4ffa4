"""Profiles from hand-built histories: engagement, send hour, affinity, attribution of events."""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pandas as pd

from personalization_assets.marts.profiles import build_profiles

from .conftest import NOW, History, ago


def profile(conn, history: History) -> pd.DataFrame:
    history.write(conn)
    return build_profiles(conn, NOW).frame.set_index("customer_key")


def test_engagement_counts_humans_only_and_resolves_by_email(duck):
    h = History()
    h.customer("bob", timezone="America/New_York")
    for day in (1, 2, 3):
        h.email_event("bob", "open", ago(days=day).replace(hour=12))
    h.email_event("bob", "click", ago(days=4).replace(hour=3))
    h.email_event("bob", "open", ago(hours=1), is_machine=True)  # Apple MPP prefetch: not engagement
    p = profile(duck, h).loc["bob"]
    assert (p["email_opens"], p["email_clicks"]) == (3, 1)
    assert p["last_engaged_at"] == ago(days=1).replace(hour=12)
    # Mode hour 12:00 UTC, shown in New York's offset on the send day (EDT since 8 March 2026).
    expected = datetime(2026, 3, 10, 12, tzinfo=timezone.utc).astimezone(ZoneInfo("America/New_York")).hour
    assert p["preferred_send_hour"] == expected == 8


def test_missing_and_empty_email_events_are_tolerated(duck):
    h = History()
    h.customer("amy")
    p = profile(duck, h).loc["amy"]  # no email_events table at all
    assert (p["email_opens"], p["email_clicks"], p["preferred_send_hour"]) == (0, 0, 10)
    h.email_events = []  # the table exists but is empty
    assert profile(duck, h).loc["amy", "email_opens"] == 0


def test_orders_affinity_and_cancelled_orders(duck):
    h = History()
    h.customer("cat", timezone="Asia/Tokyo")
    h.order("cat", ago(days=10).replace(hour=1), total_minor=3000, lines=(("S1", "shoes", 1),))
    h.order("cat", ago(days=5).replace(hour=1), total_minor=9000, lines=(("B1", "bags", 1), ("B2", "bags", 1)))
    h.order("cat", ago(days=1), total_minor=99999, lines=(("X", "watches", 1),), status="cancelled")
    p = profile(duck, h).loc["cat"]
    assert p["orders_count"] == 2 and p["historical_value_minor"] == 12000 and p["aov_minor"] == 6000
    assert (p["top_category_1"], p["top_category_2"], p["top_category_3"]) == ("bags", "shoes", None)
    assert p["first_order_at"] == ago(days=10).replace(hour=1)
    assert p["preferred_send_hour"] == 10  # orders at 01:00 UTC = 10:00 in Tokyo


def test_anonymous_events_join_through_the_identity_map(duck):
    h = History()
    h.customer("dan")
    h.rows["core.identity_map"].append({"identity_type": "anonymous_id", "identity": "anon-1",
                                        "customer_key": "dan"})
    h.event(None, "Product Viewed", ago(hours=4), sku="V1", anonymous_id="anon-1")
    h.event(None, "Product Viewed", ago(hours=1), sku="NOBODY", anonymous_id="anon-unknown")
    h.event("dan", "Product Added", ago(hours=2), sku="C1", cart_id="cart-9")
    p = profile(duck, h).loc["dan"]
    assert (p["last_viewed_sku"], p["last_carted_sku"], p["last_carted_cart_id"]) == ("V1", "C1", "cart-9")


def test_older_staging_without_optional_columns_uses_documented_fallbacks(duck):
    from personalization_assets.marts.payloads import build_payloads
    from personalization_assets.marts.profiles import write_profiles

    h = History()
    h.customer("eve")
    h.order("eve", ago(days=3), total_minor=4000, lines=(("S1", "shoes", 2),))
    h.event("eve", "Product Added", ago(hours=2), sku="S1")
    h.write(duck)
    for table, col in [("staging.orders", "total_reporting_minor"), ("staging.orders", "fx_rate"),
                       ("staging.order_lines", "line_total_minor"), ("staging.events", "value_minor"),
                       ("staging.events", "currency"), ("core.customers", "created_at")]:
        duck.execute(f"alter table {table} drop column {col}")
    built = build_profiles(duck, NOW)
    p = built.frame.set_index("customer_key").loc["eve"]
    assert p["historical_value_minor"] == 4000  # total_minor stands in for the reporting amount
    assert p["top_category_1"] == "shoes"
    write_profiles(duck, built.frame)
    (doc,) = build_payloads(duck, membership=None)["payload"]
    import json
    (item,) = json.loads(doc)["cart"]
    assert (item["price_minor"], item["currency"]) == (2000, "GBP")  # last price the shop sold S1 at
