"""Marts: what the email team works with. Profiles and segment membership, computed in the warehouse."""

from datetime import timedelta

import dagster as dg
import pandas as pd

from ..resources.warehouse import Warehouse
from .common import WAREHOUSE_POOL, frame_metadata, utc_now

PROFILE_SQL = """
select c.customer_key, c.email, c.first_name, c.email_opt_in, c.consent_processing,
       c.timezone, c.locale,
       count(o.order_id) as orders,
       coalesce(sum(o.total_minor), 0) as revenue_minor,
       min(o.created_at) as first_order_at,
       max(o.created_at) as last_order_at
from core.customers c
left join core.customer_crosswalk x on x.customer_key = c.customer_key
left join staging.orders o on o.customer_record_id = x.record_id and o.status <> 'cancelled'
group by all
"""

SEGMENT_SQL = {
    "cart_abandoners": """
        with carts as (
            select m.customer_key, e.cart_id, max(e.timestamp) as carted_at
            from staging.events e
            join core.identity_map m on m.identity_type = 'user_id' and m.identity = e.user_id
            where e.event = 'product added' and e.cart_id is not null and e.timestamp >= ?
            group by all
        )
        select distinct c.customer_key
        from carts c
        where c.cart_id not in (select cart_id from staging.orders where cart_id is not null)
          and not exists (
              select 1 from staging.orders o
              join core.customer_crosswalk x on x.record_id = o.customer_record_id
              where x.customer_key = c.customer_key and o.created_at > c.carted_at)
    """,
    "high_value": """
        select customer_key from marts.customer_profiles where revenue_minor >= 30000
    """,
}
SEGMENT_PARAMS = {"cart_abandoners": lambda now: [now - timedelta(days=7)], "high_value": lambda now: []}


@dg.asset(key=["marts", "customer_profiles"], deps=[["core", "customers"], ["core", "customer_crosswalk"],
          ["staging", "orders"]], group_name="marts", pool=WAREHOUSE_POOL, tags={"pii": "true"},
          kinds={"sql", "duckdb"})
def customer_profiles(warehouse: Warehouse) -> dg.MaterializeResult:
    """One profile per customer: order history, value, and subscription state."""
    with warehouse.connect() as conn:
        frame = conn.query(PROFILE_SQL)
        conn.prepare_table("marts", "customer_profiles", frame)
        with conn.transaction():
            conn.replace_frame("marts", "customer_profiles", frame)
    return dg.MaterializeResult(metadata=frame_metadata(frame))


@dg.asset(key=["marts", "segment_membership"], deps=[customer_profiles, ["staging", "events"],
          ["core", "identity_map"]], group_name="marts", pool=WAREHOUSE_POOL, kinds={"sql", "duckdb"})
def segment_membership(warehouse: Warehouse) -> dg.MaterializeResult:
    """Who is in each sendable segment now. Unsubscribed and non-consenting customers never are."""
    now = utc_now()
    parts = []
    with warehouse.connect() as conn:
        sendable = conn.query("select customer_key from core.customers where email_opt_in and consent_processing")
        for name, sql in SEGMENT_SQL.items():
            members = conn.query(sql, SEGMENT_PARAMS[name](now))
            members = members[members["customer_key"].isin(sendable["customer_key"])]
            parts.append(pd.DataFrame({"segment": name, "customer_key": members["customer_key"], "since": now}))
        frame = pd.concat(parts, ignore_index=True)
        frame["since"] = pd.to_datetime(frame["since"], utc=True)
        conn.prepare_table("marts", "segment_membership", frame)
        with conn.transaction():
            conn.replace_frame("marts", "segment_membership", frame)
    sizes = frame["segment"].value_counts().reindex(SEGMENT_SQL.keys(), fill_value=0).to_dict()
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, segment_sizes=sizes, **{f"segment_size:{k}": int(v) for k, v in sizes.items()}))


defs = dg.Definitions(assets=[customer_profiles, segment_membership])
