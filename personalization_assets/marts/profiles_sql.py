"""The big per-customer aggregation, run inside the warehouse (one row per customer comes back).

Bind parameters: [as_of] x 5 (orders, lines, views, carts, e-mail events up to the run's instant).
Timestamps are compared in UTC; `cast(... as date)` and `extract(hour ...)` mean UTC days and
hours (see `prepare_session`).
"""

from __future__ import annotations

from ..audiences.suppression import SEVERITY_TO_REASON, SUPPRESSED_CTE
from .inputs import (CART_EVENTS, CLICK_TYPES, OPEN_TYPES, VIEW_EVENTS, InputTables, Sql, input_ctes,
                     sql_list)

TOP_CATEGORIES = 3


def prepare_session(conn: Sql) -> None:
    """DuckDB casts timestamptz in the session zone, so pin it to UTC. Snowflake's TIMESTAMP_TZ
    keeps each value's own offset (UTC as we store it), so it needs nothing."""
    if conn.dialect == "duckdb":
        conn.execute("set TimeZone = 'UTC'")


def _last(event_names: tuple[str, ...], prefix: str) -> str:
    return f"""
{prefix} as (
    select customer_key, sku as {prefix}_sku, ts as {prefix}_at, cart_id as {prefix}_cart_id
    from c_events
    where event in ({sql_list(event_names)}) and customer_key is not null and ts <= ?
    qualify row_number() over (partition by customer_key order by ts desc, sku) = 1
)"""


def profile_sql(conn: Sql, tables: InputTables = InputTables()) -> str:
    tops = ",\n       ".join(
        f"max(case when rn = {i} then category end) as top_category_{i}" for i in range(1, TOP_CATEGORIES + 1))
    return input_ctes(conn, tables) + "," + SUPPRESSED_CTE + f""",
o as (select * from c_orders where customer_key is not null and created_at <= ?),
daily as (
    select customer_key, cast(created_at as date) as order_day, sum(value_minor) as day_value
    from o group by customer_key, cast(created_at as date)
),
ord as (
    select customer_key, count(*) as orders_count, sum(value_minor) as historical_value_minor,
           min(created_at) as first_order_at, max(created_at) as last_order_at
    from o group by customer_key
),
days as (
    select customer_key, count(*) as order_days, min(order_day) as first_order_day,
           max(order_day) as last_order_day,
           sum(day_value) - max(case when first_rank = 1 then day_value end) as repeat_value_minor
    from (select d.*, row_number() over (partition by customer_key order by order_day) as first_rank
          from daily d) ranked
    group by customer_key
),
cats as (
    select customer_key, category,
           row_number() over (partition by customer_key order by sum(line_total_minor) desc, category) as rn
    from c_lines where customer_key is not null and category is not null and created_at <= ?
    group by customer_key, category
),
top_cats as (select customer_key, {tops} from cats where rn <= {TOP_CATEGORIES} group by customer_key),
{_last(VIEW_EVENTS, "last_viewed")},
{_last(CART_EVENTS, "last_carted")},
eng as (
    select customer_key,
           sum(case when type in ({sql_list(OPEN_TYPES)}) then 1 else 0 end) as email_opens,
           sum(case when type in ({sql_list(CLICK_TYPES)}) then 1 else 0 end) as email_clicks,
           max(ts) as last_engaged_at
    from c_email
    where customer_key is not null and not is_machine and ts <= ?
      and type in ({sql_list(OPEN_TYPES + CLICK_TYPES)})
    group by customer_key
),
eng_hours as (
    select customer_key, hour_utc from (
        select customer_key, extract(hour from ts) as hour_utc, count(*) as n
        from c_email
        where customer_key is not null and not is_machine and type in ({sql_list(OPEN_TYPES + CLICK_TYPES)})
        group by customer_key, extract(hour from ts)
    ) h qualify row_number() over (partition by customer_key order by n desc, hour_utc) = 1
),
order_hours as (
    select customer_key, hour_utc from (
        select customer_key, extract(hour from created_at) as hour_utc, count(*) as n
        from o group by customer_key, extract(hour from created_at)
    ) h qualify row_number() over (partition by customer_key order by n desc, hour_utc) = 1
)
select c.customer_key, c.email, c.first_name, c.country, c.timezone, c.locale,
       c.email_opt_in, c.consent_processing, c.created_at as customer_created_at,
       {SEVERITY_TO_REASON.replace('severity', 's.severity')} as suppression_reason,
       s.severity is null as sendable,
       coalesce(ord.orders_count, 0) as orders_count,
       coalesce(ord.historical_value_minor, 0) as historical_value_minor,
       ord.first_order_at, ord.last_order_at,
       days.order_days, days.first_order_day, days.last_order_day,
       coalesce(days.repeat_value_minor, 0) as repeat_value_minor,
       {", ".join(f"top_cats.top_category_{i}" for i in range(1, TOP_CATEGORIES + 1))},
       last_viewed.last_viewed_sku, last_viewed.last_viewed_at,
       last_carted.last_carted_sku, last_carted.last_carted_at, last_carted.last_carted_cart_id,
       coalesce(eng.email_opens, 0) as email_opens, coalesce(eng.email_clicks, 0) as email_clicks,
       eng.last_engaged_at,
       eng_hours.hour_utc as engaged_hour_utc, order_hours.hour_utc as order_hour_utc
from c_customers c
left join c_suppressed s on s.customer_key = c.customer_key
left join ord on ord.customer_key = c.customer_key
left join days on days.customer_key = c.customer_key
left join top_cats on top_cats.customer_key = c.customer_key
left join last_viewed on last_viewed.customer_key = c.customer_key
left join last_carted on last_carted.customer_key = c.customer_key
left join eng on eng.customer_key = c.customer_key
left join eng_hours on eng_hours.customer_key = c.customer_key
left join order_hours on order_hours.customer_key = c.customer_key
"""


# -- enrichment: RFM, CLV and send hour, on the aggregated rows (`base`), inside the warehouse ----
DROPPED = ("order_days", "first_order_day", "last_order_day", "repeat_value_minor", "engaged_hour_utc",
           "order_hour_utc")  # inputs of the enrichment, not profile columns
BASE_COLUMNS = ("customer_key", "email", "first_name", "country", "timezone", "locale", "email_opt_in",
                "consent_processing", "customer_created_at", "suppression_reason", "sendable", "orders_count",
                "historical_value_minor", "first_order_at", "last_order_at",
                *(f"top_category_{i}" for i in range(1, TOP_CATEGORIES + 1)),
                "last_viewed_sku", "last_viewed_at", "last_carted_sku", "last_carted_at", "last_carted_cart_id",
                "email_opens", "email_clicks", "last_engaged_at")


def half_even(expr: str) -> str:
    """round(expr) with ties to even, as Python's round and numpy's (Snowflake's ROUND and
    DuckDB's round go away from zero): a tie is 2 * round(expr / 2), which is never a tie."""
    return f"(case when ({expr}) - floor({expr}) = 0.5 then 2 * round(({expr}) / 2) else round({expr}) end)"


def seconds_before(conn: Sql, ts: str) -> str:
    """Seconds (double, microsecond precision) from `ts` to the bound instant `?`."""
    if conn.dialect == "duckdb":
        return f"cast(epoch_us(cast(? as timestamptz)) - epoch_us({ts}) as double) / 1e6"
    return f"cast(datediff(microsecond, {ts}, ?) as double) / 1e6"


def buyers_sql(base: str) -> str:
    """x (repeat purchase days), t_x and T (days) and mean repeat value per buyer. Binds: [as_of date]."""
    return f"""select customer_key, order_days - 1 as x, last_order_day - first_order_day as t_x,
       cast(? as date) - first_order_day as t_age,
       case when order_days > 1 then cast(repeat_value_minor as double) / (order_days - 1) end as m
from {base} where order_days > 0"""


def enrich_sql(conn: Sql, base: str, segment_names: dict[int, str], clv: dict | None, if_alive: str | None,
               zone_count: int, default_hour: int) -> str:
    """The profile rows from `base`. Binds: [as_of] (recency), then (zone, offset hours) x
    `zone_count` (send hour), then [as_of date] if `clv`.

    Quintiles rank buyers as `rfm.quintile` does (ties in key order); `clv` holds the fitted BG/NBD
    (r, alpha, a, b) and Gamma-Gamma (p, q, v) parameters, and `if_alive` the table of
    `clv.purchases_if_alive` per (x, t_age)."""
    names = " ".join(f"when {code} then '{name}'" for code, name in sorted(segment_names.items()))
    quintile = "cast(floor(({rank} - 1) * 5.0 / n_buyers) as bigint) + 1"
    if clv:
        f = {k: repr(float(v)) for k, v in clv.items()}
        odds = (f"case when b.x > 0 then exp(ln({f['a']}) - ln({f['b']} + b.x - 1) + ({f['r']} + b.x) * "
                f"(ln({f['alpha']} + b.t_age) - ln({f['alpha']} + b.t_x))) else 0 end")
        value = f"({f['p']} * ({f['v']} + b.x * coalesce(b.m, 0))) / ({f['p']} * b.x + {f['q']} - 1)"
        clv_from = (f"left join ({buyers_sql(base)}) b on b.customer_key = s.customer_key "
                    f"left join {if_alive} l on l.x = b.x and l.t_age = b.t_age")
        clv_cols = (f"case when b.x is not null then 1 / (1 + {odds}) end as p_alive,\n"
                    f"       l.if_alive / (1 + {odds}) as expected_orders_next_year,\n"
                    f"       {half_even(f'l.if_alive / (1 + {odds}) * {value}')} as predicted_value_minor")
    else:
        clv_from = ""
        clv_cols = ("cast(null as double) as p_alive, cast(null as double) as expected_orders_next_year, "
                    "cast(null as double) as predicted_value_minor")
    zones = " ".join("when ? then ?" for _ in range(zone_count))
    offset = f"case s.timezone {zones} else 0.0 end" if zone_count else "0.0"
    hour = "coalesce(s.engaged_hour_utc, s.order_hour_utc)"
    return f"""with
r as (
    select base.*, {seconds_before(conn, 'last_order_at')} / 86400 as recency_days,
           cast(historical_value_minor as double) / 100 as monetary
    from {base} base
),
ranked as (
    select customer_key,
           row_number() over (order by recency_days desc, customer_key) as r_rank,
           row_number() over (order by orders_count, customer_key) as f_rank,
           row_number() over (order by monetary, customer_key) as m_rank,
           count(*) over () as n_buyers
    from r where recency_days is not null
),
scored as (
    select r.*, {quintile.format(rank='k.r_rank')} as r_score, {quintile.format(rank='k.f_rank')} as f_score,
           {quintile.format(rank='k.m_rank')} as m_score
    from r left join ranked k on k.customer_key = r.customer_key
)
select {", ".join(f"s.{c}" for c in BASE_COLUMNS)},
       s.recency_days, s.orders_count as frequency, s.monetary,
       case when s.orders_count > 0 then {half_even('cast(s.historical_value_minor as double) / s.orders_count')}
       end as aov_minor,
       s.r_score, s.f_score, s.m_score,
       cast(s.r_score as varchar) || cast(s.f_score as varchar) || cast(s.m_score as varchar) as rfm_score,
       case when s.r_score is null then 'no_orders' else case s.r_score * 10 + s.f_score {names} end
       end as rfm_segment,
       {clv_cols},
       case when {hour} is null then {int(default_hour)}
            else cast((cast(floor({hour} + {offset}) as bigint) % 24 + 24) % 24 as bigint) end as preferred_send_hour
from scored s {clv_from}
order by s.customer_key
"""
