"""The personalization payloads built set-wise in the warehouse (DuckDB): SQL writes
`marts.personalization_payloads` (one statement per chunk of customers, see `write_payloads`),
and no row passes through Python.

The statement spells out what `payloads.build_payloads` does per customer, and its JSON text is the
same bytes (keys sorted, ", " and ": " separators, non-ASCII kept, escapes as `json.dumps`): money
converts through the same float operations in the same order, rounds half to even like `round`,
and displays with the same `{:,.Nf}` format; greetings strip what `str.strip` strips.
`personalization_assets_tests/marts/test_payloads_sql.py` compares the two byte for byte.
"""

from __future__ import annotations

import iso4217

from .inputs import CART_EVENTS, VIEW_EVENTS, InputTables, Sql, column, input_ctes, sql_list
from .payloads import DISCOUNT_SEGMENTS, GREETINGS, HELLO, LAST_VIEWED
from .recommendations import recommendation_ctes, recommendation_sql, with_ctes

CHUNK_CUSTOMERS = 25_000  # sendable customers per statement of the chunked build (at 100k a 1.5 GB limit ran out)
COLUMNS = ["customer_key", "email", "locale", "currency", "loyalty_tier", "discount_eligible", "payload"]
# What Python's str.strip() removes (str.isspace), as an RE2 class.
PY_SPACE = (r"[\t\n\x{0b}\x{0c}\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
            r"\x{202f}\x{205f}\x{3000}]")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _values(rows: list[tuple], names: str) -> str:
    body = ", ".join("(" + ", ".join(_literal(v) if isinstance(v, str) else str(v) for v in row) + ")"
                     for row in rows)
    return f"(select * from (values {body}) v({names}))"


def _exponents() -> str:
    return _values([(c.code, int(c.exponent or 0)) for c in iso4217.Currency], "code, exponent")


def _strip(expr: str) -> str:
    return f"regexp_replace({expr}, '^{PY_SPACE}+|{PY_SPACE}+$', '', 'g')"


def _json(expr: str) -> str:
    return f"coalesce(to_json({expr}), 'null')"


def _display(minor: str, exponent: str) -> str:
    """f"{minor / 10 ** e:,.{e}f}" for the exponents ISO 4217 uses."""
    cases = " ".join(f"when {e} then format('{{:,.{e}f}}', {minor} / power(10, {e}))"
                     for e in sorted({int(c.exponent or 0) for c in iso4217.Currency} | {2}))
    return f"case {exponent} {cases} end"


def customer_sql(profiles: str, reporting: str) -> str:
    """Sendable customers and their currency (of their latest order, else the reporting one)."""
    return f"""
    select p.customer_key, p.email, p.first_name, p.locale, p.orders_count, p.m_score, p.f_score,
           p.last_carted_cart_id, coalesce(cur.currency, {reporting}) as currency
    from {profiles} p left join (
        select customer_key, currency from c_orders where customer_key is not null
        qualify row_number() over (partition by customer_key order by created_at desc) = 1
    ) cur on cur.customer_key = p.customer_key
    where p.sendable
"""


def payload_sql(conn: Sql, tables: InputTables = InputTables(), profiles: str = "marts.customer_profiles",
                membership: str | None = "marts.segment_membership", reporting_currency: str = "EUR",
                recommendations: str | None = None, shared: dict[str, str] | None = None,
                events: str = "c_events", final: str | None = None) -> str:
    """One row per sendable customer (COLUMNS), ordered by customer_key. No bind parameters.
    `recommendations`: a table already holding `recommendation_sql`'s rows (else computed here);
    `shared`: relations standing in for the CTEs p_customer, p_rates, p_catalog and p_segments
    (a chunked build passes one chunk's customers); `events`: the relation of c_events' rows;
    `final`: a select over the CTEs instead of the payload rows."""
    reporting = _literal(reporting_currency)
    segments = (f"select distinct customer_key, segment from {membership}" if membership
                else "select cast(null as varchar) as customer_key, cast(null as varchar) as segment where 1 = 0")
    fx = column(conn, tables, "orders", "fx_rate", "o")
    shared = {name: f"select * from {relation}" for name, relation in (shared or {}).items()}
    customers = shared.get("p_customer") or customer_sql(profiles, reporting)
    segments = shared.get("p_segments") or segments
    rates = shared.get("p_rates") or f"""
    select currency, cast(fx_rate as double) as fx_rate from p_fx
    union all select {reporting}, 1.0 where {reporting} not in (select currency from p_fx)"""
    # each sku's latest line (newest created_at, then the first order_id), as an aggregate: a
    # window over every order line could not spill, and failed under 768 MB at 3M customers
    catalog = shared.get("p_catalog") or """
    select sku, latest.name, latest.unit_price_minor, latest.currency, true as hit from (
        select sku, arg_min({'name': product_name, 'unit_price_minor': unit_price_minor, 'currency': currency},
                            (coalesce(-epoch_us(created_at), 9223372036854775807), order_id)) as latest
        from c_lines group by sku)"""
    final = final or f"""select customer_key, email, locale, currency, loyalty_tier, discount_eligible,
       '{{"cart": [' || coalesce(cart, '') || '], "currency": ' || {_json('currency')}
       || ', "discount_eligible": ' || case when discount_eligible then 'true' else 'false' end
       || ', "first_name": ' || {_json('name')} || ', "greeting": ' || {_json('greeting')}
       || ', "last_viewed": [' || coalesce(viewed, '') || '], "locale": ' || {_json('locale')}
       || ', "loyalty_tier": ' || {_json('loyalty_tier')} || ', "recommendations": [' || coalesce(recs, '')
       || '], "segments": [' || coalesce(segments, '') || ']}}' as payload
from p_final
order by customer_key"""
    return input_ctes(conn, tables) + f""",
p_exponents as {_exponents()},
p_hello as {_values(sorted(HELLO.items()), "lang, word")},
p_greetings as {_values(sorted(GREETINGS.items()), "lang, word")},
p_customer as ({customers}),
p_fx as (
    select currency, fx_rate from (
        select o.currency, o.created_at, {fx} as fx_rate from {tables.orders} o) r
    where fx_rate is not null and currency is not null
    qualify row_number() over (partition by currency order by created_at desc) = 1
),
p_rates as ({rates}),
p_catalog as ({catalog}),
p_cart as (
    select e.customer_key, e.sku, max(e.value_minor) as value_minor, max(e.currency) as currency,
           count(*) as quantity
    from {events} e join p_customer p on p.customer_key = e.customer_key and p.last_carted_cart_id = e.cart_id
    where e.event in ({sql_list(CART_EVENTS)}) group by e.customer_key, e.sku
),
p_cart_source as (
    select c.customer_key, c.sku, c.quantity, p.currency as target,
           cat.name as cat_name, cat.hit is not null as in_catalog,
           coalesce(c.value_minor, case when cat.unit_price_minor is not null then cat.unit_price_minor end)
               as minor,
           case when c.value_minor is not null then coalesce(c.currency, p.currency)
                when cat.unit_price_minor is not null then cat.currency end as source,
           c.value_minor is not null or cat.unit_price_minor is not null as priced
    from p_cart c join p_customer p on p.customer_key = c.customer_key
    left join p_catalog cat on cat.sku is not distinct from c.sku
),
p_cart_price as (
    select s.*,
           case when not s.priced then null
                when s.source = s.target or rs.fx_rate is null or rt.fx_rate is null then s.minor
                else cast(round_even(s.minor / power(10, coalesce(es.exponent, 2)) * rs.fx_rate / rt.fx_rate
                                     * power(10, coalesce(et.exponent, 2)), 0) as bigint) end as price_minor,
           case when not s.priced then null
                when s.source = s.target or rs.fx_rate is null or rt.fx_rate is null then s.source
                else s.target end as price_currency
    from p_cart_source s
    left join p_rates rs on rs.currency = s.source left join p_rates rt on rt.currency = s.target
    left join p_exponents es on es.code = upper(s.source) left join p_exponents et on et.code = upper(s.target)
),
p_cart_json as (
    select c.customer_key,
           string_agg('{{"currency": ' || {_json('c.price_currency')}
                      || ', "name": ' || case when c.in_catalog then {_json('c.cat_name')} else {_json('c.sku')} end
                      || ', "price": ' || case when c.priced then to_json({_display('c.price_minor', 'coalesce(e.exponent, 2)')}
                                                                   || ' ' || c.price_currency) else 'null' end
                      || ', "price_minor": ' || coalesce(cast(c.price_minor as varchar), 'null')
                      || ', "quantity": ' || cast(c.quantity as varchar)
                      || ', "sku": ' || {_json('c.sku')} || '}}', ', ' order by c.sku) as items
    from p_cart_price c left join p_exponents e on e.code = upper(c.price_currency)
    group by c.customer_key
),
p_viewed as (
    select customer_key, sku, ts from (
        select e.customer_key, e.sku, max(e.ts) as ts from {events} e join p_customer p
          on p.customer_key = e.customer_key
        where e.event in ({sql_list(VIEW_EVENTS)}) and e.sku is not null group by e.customer_key, e.sku
    ) v qualify row_number() over (partition by customer_key order by ts desc, sku) <= {LAST_VIEWED}
),
p_viewed_json as (
    select v.customer_key,
           string_agg('{{"name": ' || case when cat.hit then {_json('cat.name')} else {_json('v.sku')} end
                      || ', "sku": ' || {_json('v.sku')} || '}}', ', ' order by v.ts desc, v.sku) as items
    from p_viewed v left join p_catalog cat on cat.sku = v.sku group by v.customer_key
),
p_recs as ({f"select * from {recommendations}" if recommendations else recommendation_sql(conn, tables, profiles)}),
p_recs_json as (
    select r.customer_key,
           string_agg('{{"name": ' || case when cat.hit then {_json('cat.name')} else {_json('r.sku')} end
                      || ', "reason": ' || {_json('r.reason')}
                      || ', "sku": ' || {_json('r.sku')} || '}}', ', ' order by r.rank) as items
    from p_recs r left join p_catalog cat on cat.sku is not distinct from r.sku group by r.customer_key
),
p_segments as ({segments}),
p_segments_json as (
    select customer_key, string_agg({_json('segment')}, ', ' order by segment) as items,
           bool_or(segment in ({sql_list(sorted(DISCOUNT_SEGMENTS))})) as discount_segment
    from p_segments group by customer_key
),
p_rows as (
    select p.customer_key, p.email, coalesce(nullif(p.locale, ''), 'en') as locale, p.currency,
           nullif({_strip('p.first_name')}, '') as name,
           lower(split_part(replace(coalesce(nullif(p.locale, ''), 'en'), '_', '-'), '-', 1)) as lang,
           case when p.orders_count = 0 then 'none'
                when coalesce(p.m_score, 0) = 5 and coalesce(p.f_score, 0) >= 4 then 'platinum'
                when coalesce(p.m_score, 0) >= 4 then 'gold'
                when p.orders_count >= 2 then 'silver' else 'bronze' end as loyalty_tier,
           cj.items as cart, vj.items as viewed, rj.items as recs, sj.items as segments,
           coalesce(sj.discount_segment, false) as discount_segment
    from p_customer p
    left join p_cart_json cj on cj.customer_key = p.customer_key
    left join p_viewed_json vj on vj.customer_key = p.customer_key
    left join p_recs_json rj on rj.customer_key = p.customer_key
    left join p_segments_json sj on sj.customer_key = p.customer_key
),
p_final as (
    select r.*, r.discount_segment and r.loyalty_tier <> 'platinum' as discount_eligible,
           case when r.name is not null then coalesce(h.word, 'Hi') || ' ' || r.name
                else coalesce(g.word, 'Hi there') end as greeting
    from p_rows r left join p_hello h on h.lang = r.lang left join p_greetings g on g.lang = r.lang
)
{final}
"""


def write_payloads(conn: Sql, target: str = "marts.personalization_payloads", tables: InputTables = InputTables(),
                   profiles: str = "marts.customer_profiles", membership: str | None = "marts.segment_membership",
                   reporting_currency: str = "EUR", chunk_customers: int = CHUNK_CUSTOMERS) -> int:
    """Replace `target` with the payloads, inside the warehouse. Returns the rows written.

    Built in chunks of about `chunk_customers` sendable customers (by a hash of the key), so that
    the per-customer aggregations (views, cart, about 100 recommendation candidates per customer,
    JSON text) hold one chunk at a time: at 1M customers in one statement they spilled gigabytes under a memory
    limit (and without one were killed at 14 GB). What does not depend on the customer (rates,
    catalog, co-purchase pairs, bestsellers) is computed once; the customers' events and order
    lines are read once, tagged with their chunk. The chunks go to `<target>__next`, which then
    replaces `target` in one transaction (readers see the old table or the new one)."""
    if conn.dialect != "duckdb":
        raise ValueError(f"payloads in SQL are written for DuckDB (got {conn.dialect}): use build_payloads")
    schema, bare = target.split(".")
    conn.execute(f"create schema if not exists {schema}")
    kwargs = dict(tables=tables, profiles=profiles, membership=membership, reporting_currency=reporting_currency)
    ctes = input_ctes(conn, tables)
    recs = recommendation_ctes(profiles)
    size = max(1, int(chunk_customers))
    # Scratch tables in the target's schema, not temporary ones: under a memory limit DuckDB must
    # write an evicted temporary block to its spill file, while a table's blocks are in the file.
    t = {name: f"{schema}.{bare}__{name}" for name in (
        "customers", "rates", "catalog", "events", "orders", "lines", "purchases", "segments", "pairs", "sellers",
        "cat_best", "shop_best", "recs", "next")}
    create = "create or replace table"
    try:
        # chunks by a hash of the key: numbering the customers in key order (a window over every
        # sendable customer's row) could not spill, and failed under 768 MB at 3M customers
        conn.execute(f"{create} {t['customers']} as {ctes} select * "
                     f"from ({customer_sql(profiles, _literal(reporting_currency))}) c")
        total = int(conn.query(f"select count(*) as n from {t['customers']}")["n"].iat[0])
        conn.execute(f"alter table {t['customers']} add column chunk bigint")
        conn.execute(f"update {t['customers']} set chunk = hash(customer_key) % {max(1, -(-total // size))}")
        conn.execute(f"{create} {t['rates']} as {payload_sql(conn, **kwargs, final='select * from p_rates')}")
        conn.execute(f"{create} {t['catalog']} as {payload_sql(conn, **kwargs, final='select * from p_catalog')}")
        conn.execute(f"{create} {t['events']} as {ctes} select e.customer_key, e.event, e.ts, e.cart_id, e.sku, "
                     f"e.currency, e.value_minor, p.chunk from c_events e join {t['customers']} p "
                     "on p.customer_key = e.customer_key")
        # c_lines' rows by way of the purchases' keys, kept first: in one statement with c_orders' own
        # joins and the customers' the lines could not spill under 768 MB at 3M customers
        conn.execute(f"{create} {t['orders']} as {ctes} select customer_key, order_id from c_orders")
        conn.execute(f"{create} {t['lines']} as select distinct o.customer_key, l.sku, p.chunk "
                     f"from {tables.order_lines} l join {t['orders']} o on o.order_id = l.order_id "
                     f"join {t['customers']} p on p.customer_key = o.customer_key")
        segments = f"select s.*, p.chunk from p_segments s join {t['customers']} p on p.customer_key = s.customer_key"
        conn.execute(f"{create} {t['segments']} as {payload_sql(conn, **kwargs, final=segments)}")
        conn.execute(f"{create} {t['purchases']} as select distinct l.order_id, l.sku, l.category "
                     f"from {tables.order_lines} l semi join {t['orders']} o on o.order_id = l.order_id")
        shared_recs = recommendation_ctes(profiles, purchases=t["purchases"])
        for name in ("pairs", "sellers"):
            conn.execute(f"{create} {t[name]} as {ctes}, {with_ctes(shared_recs)} select * from {name}")
        for name in ("cat_best", "shop_best"):
            conn.execute(f"{create} {t[name]} as {ctes}, "
                         f"{with_ctes(recs, {'sellers': 'select * from ' + t['sellers']})} select * from {name}")
        chunks = int(conn.query(f"select coalesce(max(chunk), 0) + 1 as n from {t['customers']}")["n"].iat[0])
        overrides = {name: f"select * from {t[name]}" for name in ("pairs", "cat_best", "shop_best")}
        for chunk in range(chunks):
            members = f"(select customer_key from {t['customers']} where chunk = {chunk})"
            lines = f"(select customer_key, sku from {t['lines']} where chunk = {chunk})"
            events = f"(select * exclude (chunk) from {t['events']} where chunk = {chunk})"
            chunk_profiles = f"(select * from {profiles} where customer_key in {members})"
            conn.execute(f"{create} {t['recs']} as "
                         f"{recommendation_sql(conn, tables, chunk_profiles, overrides, events=events, lines=lines, top_n=True)}")
            shared = {"p_customer": f"(select * exclude (chunk) from {t['customers']} where chunk = {chunk})",
                      "p_rates": t["rates"], "p_catalog": t["catalog"],
                      "p_segments": f"(select customer_key, segment from {t['segments']} where chunk = {chunk})"}
            rows = payload_sql(conn, **kwargs, recommendations=t["recs"], shared=shared, events=events)
            conn.execute(f"{create} {t['next']} as {rows}" if chunk == 0 else f"insert into {t['next']} {rows}")
        with conn.transaction():
            conn.execute(f"drop table if exists {target}")
            conn.execute(f"alter table {t['next']} rename to {bare}")
    finally:
        for name in t.values():
            conn.execute(f"drop table if exists {name}")
    return int(conn.query(f"select count(*) as n from {target}")["n"].iat[0])
