"""One profile per customer: what personalization needs to know, in one row.

The warehouse does the heavy aggregation (`profiles_sql`); Python adds what SQL does badly:
RFM quintiles, the CLV models and time-zone arithmetic on one row per customer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from . import clv, rfm
from .inputs import InputTables, Sql
from .profiles_sql import prepare_session, profile_sql

DEFAULT_SEND_HOUR = 10  # local time, when a customer has neither opened e-mail nor ordered
CLV_HORIZON_DAYS = 365
# The models have 4 and 3 population parameters: a fixed sample fits them as well as millions
# of rows would, in a fraction of the time. Everyone is scored with the fitted parameters.
MAX_FIT_CUSTOMERS = 50_000


@dataclass
class ProfileBuild:
    frame: pd.DataFrame
    clv_fit: dict = field(default_factory=dict)  # parameters, or the reason there are none


def build_profiles(conn: Sql, as_of: datetime, tables: InputTables = InputTables()) -> ProfileBuild:
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    prepare_session(conn)
    frame = conn.query(profile_sql(conn, tables), [as_of] * 5)
    return enrich(frame, as_of)


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def enrich(frame: pd.DataFrame, as_of: datetime) -> ProfileBuild:
    """RFM, CLV and send hour from the aggregated rows (pure; tested without a warehouse)."""
    # Warehouse row order is arbitrary; sorting makes tie-breaks in the quintiles and the CLV
    # sample reproducible from run to run.
    out = frame.sort_values("customer_key", kind="stable").reset_index(drop=True)
    for column in ("first_order_at", "last_order_at", "last_viewed_at", "last_carted_at",
                   "last_engaged_at", "customer_created_at"):
        out[column] = _utc(out[column])
    now = pd.Timestamp(as_of).tz_convert("UTC")
    out["recency_days"] = (now - out["last_order_at"]).dt.total_seconds() / 86400
    for column in ("orders_count", "historical_value_minor", "email_opens", "email_clicks"):
        out[column] = out[column].fillna(0).astype("int64")
    out["frequency"] = out["orders_count"]
    out["monetary"] = out["historical_value_minor"].astype("float64") / 100
    out["aov_minor"] = (out["historical_value_minor"] / out["orders_count"].where(out["orders_count"] > 0)).round()
    out = rfm.score(out)
    fit = add_clv(out, now)
    out["preferred_send_hour"] = local_send_hour(out, now)
    out = out.drop(columns=["order_days", "first_order_day", "last_order_day", "repeat_value_minor",
                            "engaged_hour_utc", "order_hour_utc"])
    return ProfileBuild(frame=out.reset_index(drop=True), clv_fit=fit)


def add_clv(out: pd.DataFrame, now: pd.Timestamp) -> dict:
    """Fit BG/NBD + Gamma-Gamma on this population (days) and add p_alive / predicted value."""
    buyers = out["order_days"].notna() & (out["order_days"] > 0)
    first = pd.to_datetime(out["first_order_day"])
    x = (out["order_days"] - 1).astype("float64")
    t_x = (pd.to_datetime(out["last_order_day"]) - first).dt.days.astype("float64")
    T = (now.tz_localize(None).normalize() - first).dt.days.astype("float64")
    m = (out["repeat_value_minor"] / x.where(x > 0)).astype("float64")
    out["p_alive"] = np.nan
    out["expected_orders_next_year"] = np.nan
    out["predicted_value_minor"] = np.nan
    fit_rows = buyers[buyers].index
    if len(fit_rows) > MAX_FIT_CUSTOMERS:
        fit_rows = pd.Index(np.random.default_rng(0).choice(fit_rows, MAX_FIT_CUSTOMERS, replace=False))
    try:
        bg = clv.fit_bgnbd(x[fit_rows], t_x[fit_rows], T[fit_rows])
        gg = clv.fit_gamma_gamma(x[fit_rows], m[fit_rows].fillna(0))
    except clv.FitError as err:
        return {"fitted": False, "reason": str(err)}
    idx = buyers[buyers].index
    args = (x[idx], t_x[idx], T[idx])
    purchases = clv.expected_purchases(bg, CLV_HORIZON_DAYS, *args)
    value = clv.expected_average_value(gg, x[idx], m[idx].fillna(0))
    out.loc[idx, "p_alive"] = clv.probability_alive(bg, *args)
    out.loc[idx, "expected_orders_next_year"] = purchases
    out.loc[idx, "predicted_value_minor"] = np.round(purchases * value)
    return {"fitted": True, "bgnbd": {k: round(float(v), 6) for k, v in vars(bg).items() if k != "at_bound"},
            "gamma_gamma": {k: round(float(v), 6) for k, v in vars(gg).items() if k != "at_bound"},
            "horizon_days": CLV_HORIZON_DAYS, "customers": int(buyers.sum()), "fitted_on": len(fit_rows),
            "at_bound": bg.at_bound or gg.at_bound}


def _offset_hours(tz_name: str | None, now: datetime) -> float:
    try:
        zone = ZoneInfo(tz_name) if tz_name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        zone = timezone.utc
    return now.astimezone(zone).utcoffset().total_seconds() / 3600


def local_send_hour(out: pd.DataFrame, now: pd.Timestamp) -> pd.Series:
    """Most frequent engagement hour (else order hour) shifted into the customer's time zone.

    The shift uses today's UTC offset of the zone: a send is scheduled for today, so today's
    daylight-saving state is the one that matters. Unknown zones count as UTC.
    """
    hour_utc = out["engaged_hour_utc"].fillna(out["order_hour_utc"])
    offsets = out["timezone"].map({tz: _offset_hours(tz, now.to_pydatetime())
                                   for tz in out["timezone"].dropna().unique()}).fillna(0.0)
    local = np.floor(hour_utc.astype("float64") + offsets) % 24
    return local.fillna(DEFAULT_SEND_HOUR).astype("int64")


def write_profiles(conn, frame: pd.DataFrame, schema: str = "marts", table: str = "customer_profiles") -> None:
    """Replace the warehouse table with `frame`, all or nothing (segments read it from there)."""
    conn.prepare_table(schema, table, frame)
    with conn.transaction():
        conn.replace_frame(schema, table, frame)
