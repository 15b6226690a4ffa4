"""The profiles enriched inside the warehouse (RFM quintiles, CLV scores, send hour) equal those of
the pandas enrichment they replaced (kept here as the oracle, as it was before issue 23), on random
histories with tied values, many time zones (half-hour, negative, unknown) and repeat buyers."""

import random
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pytest

from personalization_assets.marts import clv, profiles, rfm
from personalization_assets.marts.profiles import build_profiles, materialize_profiles
from personalization_assets.marts.profiles_sql import prepare_session, profile_sql

from .conftest import NOW, History, ago

ZONES = ["Europe/London", "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham", "America/Los_Angeles",
         "Not/AZone", None, "UTC", "Asia/Tokyo"]


# -- the pandas enrichment before issue 23 (marts/profiles.py at 3d885c8), the oracle ---------------
def _oracle(frame: pd.DataFrame, as_of: datetime) -> tuple[pd.DataFrame, dict]:
    out = frame.sort_values("customer_key", kind="stable").reset_index(drop=True)
    for column in ("first_order_at", "last_order_at", "last_viewed_at", "last_carted_at",
                   "last_engaged_at", "customer_created_at"):
        out[column] = pd.to_datetime(out[column], utc=True)
    now = pd.Timestamp(as_of).tz_convert("UTC")
    out["recency_days"] = (now - out["last_order_at"]).dt.total_seconds() / 86400
    for column in ("orders_count", "historical_value_minor", "email_opens", "email_clicks"):
        out[column] = out[column].fillna(0).astype("int64")
    out["frequency"] = out["orders_count"]
    out["monetary"] = out["historical_value_minor"].astype("float64") / 100
    out["aov_minor"] = (out["historical_value_minor"] / out["orders_count"].where(out["orders_count"] > 0)).round()
    out = rfm.score(out)
    buyers = out["order_days"].notna() & (out["order_days"] > 0)
    first = pd.to_datetime(out["first_order_day"])
    x = (out["order_days"] - 1).astype("float64")
    t_x = (pd.to_datetime(out["last_order_day"]) - first).dt.days.astype("float64")
    T = (now.tz_localize(None).normalize() - first).dt.days.astype("float64")
    m = (out["repeat_value_minor"] / x.where(x > 0)).astype("float64")
    for column in ("p_alive", "expected_orders_next_year", "predicted_value_minor"):
        out[column] = np.nan
    idx = buyers[buyers].index
    bg = clv.fit_bgnbd(x[idx], t_x[idx], T[idx])
    gg = clv.fit_gamma_gamma(x[idx], m[idx].fillna(0))
    purchases = clv.expected_purchases(bg, 365, x[idx], t_x[idx], T[idx])
    out.loc[idx, "p_alive"] = clv.probability_alive(bg, x[idx], t_x[idx], T[idx])
    out.loc[idx, "expected_orders_next_year"] = purchases
    out.loc[idx, "predicted_value_minor"] = np.round(purchases * clv.expected_average_value(gg, x[idx], m[idx].fillna(0)))

    def offset(tz_name):
        try:
            zone = ZoneInfo(tz_name) if tz_name else timezone.utc
        except (ZoneInfoNotFoundError, ValueError):
            zone = timezone.utc
        return now.to_pydatetime().astimezone(zone).utcoffset().total_seconds() / 3600

    hour_utc = out["engaged_hour_utc"].fillna(out["order_hour_utc"])
    offsets = out["timezone"].map({tz: offset(tz) for tz in out["timezone"].dropna().unique()}).fillna(0.0)
    out["preferred_send_hour"] = (np.floor(hour_utc.astype("float64") + offsets) % 24).fillna(10).astype("int64")
    out = out.drop(columns=["order_days", "first_order_day", "last_order_day", "repeat_value_minor",
                            "engaged_hour_utc", "order_hour_utc"])
    return out, {"bgnbd": vars(bg), "gamma_gamma": vars(gg)}


def _history(seed: int, customers: int = 150) -> History:
    rng = random.Random(seed)
    h = History()
    for i in range(customers):
        key = f"k{i:03d}"
        h.customer(key, timezone=rng.choice(ZONES))
        active = rng.randrange(0, 500)
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 5, 8])):
            # Whole hours and round totals: ties in recency, frequency and value; some same-day orders.
            h.order(key, ago(days=active + rng.randrange(0, 60), hours=rng.randrange(0, 3)),
                    total_minor=rng.choice([1000, 2500, 2500, 4999, 12345]), lines=(("S1", "shoes", 1),))
        for _ in range(rng.randrange(0, 4)):
            h.email_event(key, rng.choice(["open", "click"]), ago(days=rng.randrange(1, 50), hours=rng.randrange(24)))
    return h


def _compare(duck, as_of=NOW):
    prepare_session(duck)
    want, fit = _oracle(duck.query(profile_sql(duck), [as_of] * 5), as_of)
    built = build_profiles(duck, as_of)
    got = built.frame
    assert list(got.columns) == list(want.columns)
    assert list(got["customer_key"]) == list(want["customer_key"])
    for column in want.columns:
        a, b = got[column], want[column]
        if column in ("recency_days", "monetary", "aov_minor", "p_alive", "expected_orders_next_year",
                      "predicted_value_minor"):
            np.testing.assert_allclose(a.astype("float64"), b.astype("float64"), rtol=1e-9, atol=1e-9,
                                       err_msg=column)
        else:
            assert [None if pd.isna(v) else v for v in a] == [None if pd.isna(v) else v for v in b], column
    for name, params in fit.items():
        for k, v in params.items():
            if k != "at_bound":
                assert built.clv_fit[name][k] == pytest.approx(v, rel=1e-6), (name, k)
    return got, built


@pytest.mark.parametrize("seed", [1, 23])
def test_sql_enrichment_equals_the_pandas_enrichment(duck, seed):
    _history(seed).write(duck)
    got, built = _compare(duck)
    assert built.clv_fit["fitted"] and built.clv_fit["fitted_on"] == built.clv_fit["customers"]
    assert got["predicted_value_minor"].notna().sum() > 50 and got["p_alive"].lt(1).any()
    assert set(got["rfm_segment"]) >= {"no_orders", "champions", "hibernating"}
    assert got["preferred_send_hour"].nunique() > 5


def test_materialize_writes_the_table_and_samples_every_kth_buyer(duck, monkeypatch):
    _history(5).write(duck)
    full = build_profiles(duck, NOW).frame
    monkeypatch.setattr(profiles, "MAX_FIT_CUSTOMERS", 40)
    built = materialize_profiles(duck, NOW)
    buyers = built.clv_fit["customers"]
    assert buyers > 80 and built.clv_fit["fitted_on"] == len(range(0, buyers, -(-buyers // 40))) <= 40
    table = duck.query("select * from marts.customer_profiles order by customer_key")
    assert built.rows == len(table) == len(full)
    same = [c for c in full.columns if c not in ("p_alive", "expected_orders_next_year", "predicted_value_minor")]
    pd.testing.assert_frame_equal(table[same], full[same])
    assert table["p_alive"].notna().sum() == buyers  # everyone scored with the sample's parameters


def test_too_few_buyers_leave_clv_empty(duck):
    h = History()
    h.customer("a")
    h.order("a", ago(days=3))
    h.write(duck)
    built = build_profiles(duck, NOW)
    assert not built.clv_fit["fitted"] and "10 customers" in built.clv_fit["reason"]
    row = built.frame.iloc[0]  # a lone buyer is in every first quintile, as with rfm.quintile
    assert pd.isna(row["p_alive"]) and row["rfm_segment"] == "hibernating" and row["aov_minor"] == 5000
