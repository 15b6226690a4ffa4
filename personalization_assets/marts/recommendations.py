"""Simple, honest recommendations computed in the warehouse.

1. Co-purchase: products bought in the same orders as what the customer bought or carted,
   scored by how many orders contain both.
2. Fill-up: bestsellers of the customer's top category, then of the whole shop.
Items the customer already bought are never recommended. Every row says why it was chosen.
"""

from __future__ import annotations

import pandas as pd

from .inputs import CART_EVENTS, InputTables, Sql, sql_list, input_ctes

PER_SEED = 10
PER_CUSTOMER = 4


def with_ctes(ctes: dict[str, str], overrides: dict[str, str] | None = None) -> str:
    """`name as (body), ...` in order; `overrides` replaces a body (e.g. by `select * from <table>`)."""
    overrides = overrides or {}
    return ",\n".join(f"{name} as ({overrides.get(name, body)})" for name, body in ctes.items())


def recommendation_ctes(profiles: str, events: str = "c_events", lines: str = "c_lines",
                        purchases: str = "c_lines") -> dict[str, str]:
    """The CTEs after `input_ctes`, by name. `pairs`, `cat_best` and `shop_best` do not depend on
    the customer (a chunked build computes them once, from `purchases`: a relation of the
    purchase lines' order_id, sku and category); `seeds`, `bought` and `candidates` do. Orders
    are counted over distinct (order, sku) rows: a plain count, which DuckDB spills, unlike
    count(distinct) per group."""
    return {
        "pairs": f"""
    select a.sku as seed, b.sku as sku, count(*) as n
    from (select distinct order_id, sku from {purchases}) a
    join (select distinct order_id, sku from {purchases}) b on a.order_id = b.order_id and a.sku <> b.sku
    group by a.sku, b.sku
    qualify row_number() over (partition by a.sku order by count(*) desc, b.sku) <= {PER_SEED}""",
        "seeds": f"""
    select distinct customer_key, sku from {lines} where customer_key is not null
    union
    select distinct customer_key, sku from {events}
    where customer_key is not null and sku is not null and event in ({sql_list(CART_EVENTS)})""",
        "bought": f"select distinct customer_key, sku from {lines} where customer_key is not null",
        "sellers": f"""select category, sku, count(*) as n
    from (select distinct category, sku, order_id from {purchases}) group by category, sku""",
        "cat_best": f"""
    select category, sku, n from sellers where category is not null
    qualify row_number() over (partition by category order by n desc, sku) <= {PER_SEED}""",
        "shop_best": f"""
    select sku, sum(n) as n from sellers group by sku
    qualify row_number() over (order by sum(n) desc, sku) <= {PER_SEED}""",
        "candidates": f"""
    select s.customer_key, p.sku, 1 as tier, sum(p.n) as score, 'bought together' as reason
    from seeds s join pairs p on p.seed = s.sku group by s.customer_key, p.sku
    union all
    select c.customer_key, b.sku, 2, max(b.n), 'bestseller in ' || max(b.category)
    from {profiles} c join cat_best b on b.category = c.top_category_1
    where c.sendable group by c.customer_key, b.sku
    union all
    select c.customer_key, b.sku, 3, max(b.n), 'bestseller'
    from {profiles} c cross join shop_best b where c.sendable group by c.customer_key, b.sku""",
    }


def ranked_sql(profiles: str) -> str:
    return f"""
select customer_key, sku, reason, rank from (
    select c.customer_key, c.sku, c.reason,
           row_number() over (partition by c.customer_key order by c.tier, c.score desc, c.sku) as rank
    from (select customer_key, sku, reason, tier, score from candidates
          qualify row_number() over (partition by customer_key, sku order by tier, score desc) = 1) c
    join {profiles} p on p.customer_key = c.customer_key and p.sendable
    where not exists (select 1 from bought b where b.customer_key = c.customer_key and b.sku = c.sku)
) ranked
where rank <= {PER_CUSTOMER}
order by customer_key, rank
"""


def top_n_sql(profiles: str) -> str:
    """`ranked_sql` with DuckDB's top-n aggregate instead of two windows over every candidate
    (about 110 per customer: the windows sorted them all, 71 s per 100k customers at 1M)."""
    return f"""
, kept as (
    select d.customer_key, d.sku, d.tier, d.score, d.reason from (
        select customer_key, sku, min(tier) as tier, arg_min(score, tier) as score, arg_min(reason, tier) as reason
        from candidates group by customer_key, sku) d
    join {profiles} p on p.customer_key = d.customer_key and p.sendable
    where not exists (select 1 from bought b where b.customer_key = d.customer_key and b.sku = d.sku)
), picked as (
    select customer_key,
           arg_min(struct_pack(sku := sku, reason := reason),
                   struct_pack(tier := tier, score := -score, sku := sku), {PER_CUSTOMER}) as picks
    from kept group by customer_key
)
select customer_key, picks[i].sku as sku, picks[i].reason as reason, i as rank
from picked cross join range(1, {PER_CUSTOMER + 1}) r(i)
where i <= len(picks)
order by customer_key, rank
"""


def recommendation_sql(conn: Sql, tables: InputTables, profiles: str, overrides: dict[str, str] | None = None,
                       events: str = "c_events", lines: str = "c_lines", top_n: bool = False) -> str:
    """(customer_key, sku, reason, rank) of every sendable customer of `profiles` (a table or a
    parenthesized query). `overrides`: CTE bodies by name (see `recommendation_ctes`); `top_n`:
    DuckDB only, the same rows ranked by a top-n aggregate (see `top_n_sql`)."""
    return (input_ctes(conn, tables) + ",\n" + with_ctes(recommendation_ctes(profiles, events, lines), overrides)
            + (top_n_sql(profiles) if top_n else ranked_sql(profiles)))


def recommendations(conn: Sql, tables: InputTables = InputTables(),
                    profiles: str = "marts.customer_profiles") -> pd.DataFrame:
    """(customer_key, sku, reason, rank) for every sendable customer."""
    return conn.query(recommendation_sql(conn, tables, profiles))
