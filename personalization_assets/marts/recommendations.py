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


def recommendation_sql(conn: Sql, tables: InputTables, profiles: str) -> str:
    return input_ctes(conn, tables) + f""",
pairs as (
    select a.sku as seed, b.sku as sku, count(distinct a.order_id) as n
    from c_lines a join c_lines b on a.order_id = b.order_id and a.sku <> b.sku
    group by a.sku, b.sku
    qualify row_number() over (partition by a.sku order by count(distinct a.order_id) desc, b.sku) <= {PER_SEED}
),
seeds as (
    select distinct customer_key, sku from c_lines where customer_key is not null
    union
    select distinct customer_key, sku from c_events
    where customer_key is not null and sku is not null and event in ({sql_list(CART_EVENTS)})
),
bought as (select distinct customer_key, sku from c_lines where customer_key is not null),
sellers as (select category, sku, count(distinct order_id) as n from c_lines group by category, sku),
cat_best as (
    select category, sku, n from sellers where category is not null
    qualify row_number() over (partition by category order by n desc, sku) <= {PER_SEED}
),
shop_best as (
    select sku, sum(n) as n from sellers group by sku
    qualify row_number() over (order by sum(n) desc, sku) <= {PER_SEED}
),
candidates as (
    select s.customer_key, p.sku, 1 as tier, sum(p.n) as score, 'bought together' as reason
    from seeds s join pairs p on p.seed = s.sku group by s.customer_key, p.sku
    union all
    select c.customer_key, b.sku, 2, max(b.n), 'bestseller in ' || max(b.category)
    from {profiles} c join cat_best b on b.category = c.top_category_1
    where c.sendable group by c.customer_key, b.sku
    union all
    select c.customer_key, b.sku, 3, max(b.n), 'bestseller'
    from {profiles} c cross join shop_best b where c.sendable group by c.customer_key, b.sku
)
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


def recommendations(conn: Sql, tables: InputTables = InputTables(),
                    profiles: str = "marts.customer_profiles") -> pd.DataFrame:
    """(customer_key, sku, reason, rank) for every sendable customer."""
    return conn.query(recommendation_sql(conn, tables, profiles))
