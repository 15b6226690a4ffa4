"""One profile per customer: what personalization needs to know, in one row.

Everything runs inside the warehouse (`profiles_sql`): the per-customer aggregation, RFM
quintiles, the CLV scores and the send hour in the customer's time zone. Python only fits the
CLV models on a sample of buyers, evaluates the hypergeometric part of the BG/NBD expectation for
the few distinct (x, T) pairs, and computes today's UTC offset of each distinct time zone; no
per-customer row comes back (`build_profiles` returns them as a frame for small warehouses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from . import clv, rfm
from .inputs import InputTables, Sql
from .profiles_sql import buyers_sql, enrich_sql, prepare_session, profile_sql

DEFAULT_SEND_HOUR = 10  # local time, when a customer has neither opened e-mail nor ordered
CLV_HORIZON_DAYS = 365
# The models have 4 and 3 population parameters: a fixed sample fits them as well as millions
# of rows would, in a fraction of the time. Everyone is scored with the fitted parameters.
MAX_FIT_CUSTOMERS = 50_000
TARGET = "marts.customer_profiles"
# Scratch tables, dropped at the end: temporary on DuckDB; transient in `marts` on Snowflake (a
# session may have no current schema for a temporary one, and fakesnow has no temporary schemas).
SCRATCH_SCHEMA = "marts"
BASE, IF_ALIVE, ROWS = "profile_base_scratch", "profile_if_alive_scratch", "profile_rows_scratch"


def scratch(conn: Sql, name: str) -> str:
    return name if conn.dialect == "duckdb" else f"{SCRATCH_SCHEMA}.{name}"


def _create(conn: Sql, kind: str = "scratch") -> str:
    if kind == "table":
        return "create or replace table"
    return "create or replace temporary table" if conn.dialect == "duckdb" else "create or replace transient table"
SEGMENT_CODES = {r * 10 + f: rfm.segment_name(r, f) for r in range(1, 6) for f in range(1, 6)}


@dataclass
class ProfileBuild:
    frame: pd.DataFrame | None = None  # the rows, from `build_profiles` only
    clv_fit: dict = field(default_factory=dict)  # parameters, or the reason there are none
    rows: int = 0


def build_profiles(conn: Sql, as_of: datetime, tables: InputTables = InputTables()) -> ProfileBuild:
    """The profiles as a frame, ordered by customer_key (tests, small warehouses); the asset uses
    `materialize_profiles`, which leaves them in the warehouse."""
    built = materialize_profiles(conn, as_of, tables, target=None)
    try:
        built.frame = conn.query(f"select * from {scratch(conn, ROWS)} order by customer_key")
    finally:
        conn.execute(f"drop table if exists {scratch(conn, ROWS)}")
    return built


def materialize_profiles(conn: Sql, as_of: datetime, tables: InputTables = InputTables(),
                         target: str | None = TARGET) -> ProfileBuild:
    """Replace `target` with the profiles in one `create or replace table ... as` (atomic), or
    with `target=None` write the scratch table ROWS."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    prepare_session(conn)
    day = as_of.astimezone(timezone.utc).date()
    for schema in {SCRATCH_SCHEMA, (target or SCRATCH_SCHEMA).split(".")[0]}:
        conn.execute(f"create schema if not exists {schema}")
    base, if_alive = scratch(conn, BASE), scratch(conn, IF_ALIVE)
    conn.execute(f"{_create(conn)} {base} as {profile_sql(conn, tables)}", [as_of] * 5)
    try:
        fit, params = fit_clv(conn, base, day)
        if params:
            bg = clv.BetaGeoParams(**{k: params[k] for k in ("r", "alpha", "a", "b")})
            write_if_alive(conn, base, if_alive, bg, day)
        zones = zone_offsets(conn, base, as_of)
        sql = enrich_sql(conn, base, SEGMENT_CODES, params, if_alive, len(zones), DEFAULT_SEND_HOUR)
        binds = [as_of, *[v for pair in zones for v in pair], *([day] if params else [])]
        rows_in = target or scratch(conn, ROWS)
        conn.execute(f"{_create(conn, 'scratch' if target is None else 'table')} {rows_in} as {sql}", binds)
    finally:
        conn.execute(f"drop table if exists {base}")
        conn.execute(f"drop table if exists {if_alive}")
    return ProfileBuild(clv_fit=fit, rows=int(conn.query(f"select count(*) as n from {rows_in}")["n"].iat[0]))


def fit_clv(conn: Sql, base: str, day) -> tuple[dict, dict | None]:
    """Fit BG/NBD + Gamma-Gamma (days) on every k-th buyer in key order, at most MAX_FIT_CUSTOMERS.
    (the fit's report, the parameters or None)"""
    buyers = int(conn.query(f"select count(*) as n from {base} where order_days > 0")["n"].iat[0])
    every = max(1, math.ceil(buyers / MAX_FIT_CUSTOMERS))
    sample = conn.query(f"select x, t_x, t_age, m from (select b.*, row_number() over (order by customer_key) as rn "
                        f"from ({buyers_sql(base)}) b) s where (rn - 1) % {every} = 0 order by customer_key", [day])
    x, t_x, T, m = (sample[c].astype("float64") for c in ("x", "t_x", "t_age", "m"))
    try:
        bg = clv.fit_bgnbd(x, t_x, T)
        gg = clv.fit_gamma_gamma(x, m.fillna(0))
    except clv.FitError as err:
        return {"fitted": False, "reason": str(err)}, None
    params = {**{k: v for k, v in vars(bg).items() if k != "at_bound"},
              **{k: v for k, v in vars(gg).items() if k != "at_bound"}}
    return ({"fitted": True, "bgnbd": {k: round(float(v), 6) for k, v in vars(bg).items() if k != "at_bound"},
             "gamma_gamma": {k: round(float(v), 6) for k, v in vars(gg).items() if k != "at_bound"},
             "horizon_days": CLV_HORIZON_DAYS, "customers": buyers, "fitted_on": len(sample),
             "at_bound": bg.at_bound or gg.at_bound}, params)


def write_if_alive(conn: Sql, base: str, table: str, bg: clv.BetaGeoParams, day, chunk: int = 1000) -> None:
    """`clv.purchases_if_alive` for every distinct (x, t_age) of the buyers, as a scratch table."""
    pairs = conn.query(f"select distinct x, t_age from ({buyers_sql(base)}) b", [day])
    values = clv.purchases_if_alive(bg, CLV_HORIZON_DAYS, pairs["x"], pairs["t_age"])
    conn.execute(f"{_create(conn)} {table} (x bigint, t_age bigint, if_alive double)")
    rows = list(zip(pairs["x"].astype("int64"), pairs["t_age"].astype("int64"), values))
    for start in range(0, len(rows), chunk):  # numbers we computed: written as literals
        # 2F1 can be infinite or NaN for extreme fits: those customers get no prediction (NULL).
        body = ", ".join(f"({int(x)}, {int(t)}, {repr(float(v)) if math.isfinite(v) else 'null'})"
                         for x, t, v in rows[start:start + chunk])
        conn.execute(f"insert into {table} values {body}")


def _offset_hours(tz_name: str | None, now: datetime) -> float:
    try:
        zone = ZoneInfo(tz_name) if tz_name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        zone = timezone.utc
    return now.astimezone(zone).utcoffset().total_seconds() / 3600


def zone_offsets(conn: Sql, base: str, as_of: datetime) -> list[tuple[str, float]]:
    """Today's UTC offset (hours) of each distinct time zone that is not UTC.

    The send hour is the most frequent engagement hour (else order hour) shifted by it: a send is
    scheduled for today, so today's daylight-saving state is the one that matters. Unknown zones
    count as UTC."""
    names = conn.query(f"select distinct timezone from {base} where timezone is not null")["timezone"]
    offsets = [(str(name), _offset_hours(name, as_of)) for name in names]
    return [(name, hours) for name, hours in offsets if hours != 0.0]


def write_profiles(conn, frame: pd.DataFrame, schema: str = "marts", table: str = "customer_profiles") -> None:
    """Replace the warehouse table with `frame`, all or nothing (segments read it from there)."""
    conn.prepare_table(schema, table, frame)
    with conn.transaction():
        conn.replace_frame(schema, table, frame)
