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


def _as_identity_map(stitched: pd.DataFrame) -> pd.DataFrame:
    """`stitch`'s rows in the identity map's columns (what core.identity_map made of them in pandas)."""
    is_device = stitched["anonymous_id"].notna()
    return pd.DataFrame({
        "identity_type": is_device.map({True: "anonymous_id", False: "user_id"}),
        "identity": stitched["anonymous_id"].where(is_device, stitched["user_id"]).astype(str),
        "customer_key": stitched["customer_key"], "user_id": stitched["user_id"].astype(str),
        "method": stitched["method"], "first_seen": stitched["first_seen"], "last_seen": stitched["last_seen"],
        "users_on_device": stitched["users_on_device"].astype("int64")})


def _in_order(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.astype({c: object for c in ("identity_type", "identity", "customer_key", "user_id", "method")})
    for column in ("first_seen", "last_seen"):
        out[column] = pd.to_datetime(out[column], utc=True).astype("datetime64[us, UTC]")
    out["users_on_device"] = out["users_on_device"].astype("int64")
    out = out.where(out.notna(), None)
    return out.sort_values(["identity_type", "identity"]).reset_index(drop=True)


# a record id that is also another record's CRM id: the record id wins, as in `_user_keys`
CW_CLASH = pd.concat([CW, pd.DataFrame({"record_id": ["crm:4", "4"], "customer_key": ["K4", "K9"]})],
                     ignore_index=True)


def _sql_identity_map(conn, events: pd.DataFrame) -> pd.DataFrame:
    from personalization_assets.identity.stitch import identity_map_sql

    conn.replace_frame("staging", "events", events)
    conn.replace_frame("staging", "crosswalk", CW_CLASH)
    return conn.query(identity_map_sql("staging.events", "staging.crosswalk"))


def test_identity_map_sql_equals_stitch_on_duckdb(duck):
    from personalization_assets.identity.stitch import IDENTITY_MAP_OUTPUT

    events = _hostile_events()
    expected = _as_identity_map(stitch_identities(events, CW_CLASH))
    assert expected.loc[expected["identity"] == "4", "customer_key"].tolist() == ["K9"]
    got = _sql_identity_map(duck, events)
    assert list(got.columns) == IDENTITY_MAP_OUTPUT
    pd.testing.assert_frame_equal(_in_order(got), _in_order(expected))


def test_identity_map_sql_equals_stitch_on_snowflake_sql():
    from personalization_assets_tests.marts.conftest import fakesnow_connection

    events = _hostile_events(120, seed=11)
    with fakesnow_connection() as snow:
        got = _sql_identity_map(snow, events)
    got.columns = [c.lower() for c in got.columns]
    pd.testing.assert_frame_equal(_in_order(got), _in_order(_as_identity_map(stitch_identities(events, CW_CLASH))))
