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


def _hostile_events(n: int = 400, seed: int = 7) -> pd.DataFrame:
    """Every way a device is linked or not: identify/alias/login in any case and padding, blank and
    padded ids, shared devices, users with no device, unknown users; one event per second (no ties)."""
    import random

    rng = random.Random(seed)
    types = ["page", "track", "identify", "IDENTIFY", "alias", "screen"]
    names = [None, "Signed In", " logged in ", "LOGIN", "Product Viewed", "Order Completed", "user_logged_in", ""]
    users = [None, "", "  ", "1", " 2 ", "crm:3", "4", "999"]
    anons = [None, "", " dev-b "] + [f"dev-{k}" for k in range(40)]
    start = pd.Timestamp("2026-03-01", tz="UTC")
    return pd.DataFrame([{"message_id": f"m{i}", "type": rng.choice(types), "event": rng.choice(names),
                          "user_id": rng.choice(users), "anonymous_id": rng.choice(anons),
                          "timestamp": start + pd.Timedelta(seconds=rng.randrange(10**6) * 7 + i % 7)}
                         for i in range(n)])


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.astype({"anonymous_id": object, "user_id": object, "customer_key": object, "method": object,
                        "users_on_device": "int64"})
    for column in ("first_seen", "last_seen"):
        out[column] = pd.to_datetime(out[column], utc=True).astype("datetime64[us, UTC]")
    out = out.where(out.notna(), None)
    return out.sort_values(["anonymous_id", "user_id"], na_position="first").reset_index(drop=True)


def _warehouse_stitch(conn, events: pd.DataFrame) -> pd.DataFrame:
    from personalization_assets.identity.stitch import links_sql, stitch, users_sql

    conn.replace_frame("staging", "events", events)
    return stitch(conn.query(links_sql("staging.events")), conn.query(users_sql("staging.events")), CW)


def test_warehouse_reduction_gives_the_same_identity_map_on_duckdb(duck):
    events = _hostile_events()
    expected = stitch_identities(events, CW)
    assert {"identify", "alias", "login", "user_id"} <= set(expected["method"])  # the fixture reaches them all
    assert (expected["users_on_device"] > 1).any() and expected["customer_key"].isna().any()
    pd.testing.assert_frame_equal(_comparable(_warehouse_stitch(duck, events)), _comparable(expected))


def test_warehouse_reduction_gives_the_same_identity_map_on_snowflake_sql():
    from personalization_assets_tests.marts.conftest import fakesnow_connection

    events = _hostile_events(120, seed=11)
    with fakesnow_connection() as snow:
        got = _warehouse_stitch(snow, events)
    pd.testing.assert_frame_equal(_comparable(got), _comparable(stitch_identities(events, CW)))
