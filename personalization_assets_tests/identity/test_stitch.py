"""anonymousId -> userId -> customer_key."""

import pandas as pd

from personalization_assets.identity import stitch_identities

CW = pd.DataFrame({"record_id": ["crm:1", "crm:2", "shop:5"], "customer_key": ["K1", "K2", "K1"]})


def ev(type_, event, user, anon, ts):
    return {"message_id": f"{anon}-{ts}", "type": type_, "event": event, "user_id": user, "anonymous_id": anon,
            "timestamp": pd.Timestamp(ts, tz="UTC")}


def test_pre_login_device_joins_customer_via_identify_and_login():
    events = pd.DataFrame([
        ev("page", None, None, "anon-a", "2026-01-01"),
        ev("identify", None, "1", "anon-a", "2026-01-02"),
        ev("track", "Signed In", "crm:2", "anon-b", "2026-01-03"),
        ev("track", "Product Viewed", None, "anon-c", "2026-01-03"),
    ])
    m = stitch_identities(events, CW)
    dev = m.dropna(subset=["anonymous_id"]).set_index("anonymous_id")
    assert dev.loc["anon-a", "customer_key"] == "K1" and dev.loc["anon-a", "method"] == "identify"
    assert dev.loc["anon-b", "customer_key"] == "K2" and dev.loc["anon-b", "method"] == "login"
    assert "anon-c" not in dev.index   # never identified: stays anonymous


def test_shared_device_maps_to_latest_user_and_is_flagged():
    events = pd.DataFrame([ev("identify", None, "1", "anon-x", "2026-01-01"),
                           ev("identify", None, "2", "anon-x", "2026-02-01")])
    dev = stitch_identities(events, CW).dropna(subset=["anonymous_id"]).set_index("anonymous_id")
    assert dev.loc["anon-x", "customer_key"] == "K2" and dev.loc["anon-x", "users_on_device"] == 2


def test_unknown_user_keeps_null_key_and_empty_input():
    m = stitch_identities(pd.DataFrame([ev("identify", None, "999", "anon-z", "2026-01-01")]), CW)
    assert m["customer_key"].isna().all()
    assert stitch_identities(pd.DataFrame(columns=["type", "event", "user_id", "anonymous_id", "timestamp"]), CW).empty
