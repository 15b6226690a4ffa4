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
