"""membership_sql's faster plan (counts and sums in one grouped pass per customer, candidates first,
no self-join of the profiles) selects exactly the members of the plain plan (every event condition a
correlated subquery over every customer), on random histories and definitions, with exclusions."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
from hypothesis import HealthCheck, given, settings, strategies as st

from personalization_assets.audiences.model import parse
from personalization_assets.audiences.sql import Relations, membership_sql, predicate_sql

from .helpers import DuckQuery
from .test_equivalence import BASE, audiences, events


def plain(audience, known, at, relations=Relations()) -> tuple[str, list]:
    """The plan without measures or candidates: the rule and its exclusions as predicate_sql writes them."""
    sql, params = predicate_sql(audience, at, relations, key="c")
    for name in audience.exclusions:
        other, more = predicate_sql(known[name], at, relations, key="c")
        sql, params = f"{sql} and not coalesce(({other}), false)", params + more
    return f"select c.customer_key from {relations.customers} c where {sql}", params


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=events(), defs=audiences(), minutes=st.lists(st.integers(0, 200), min_size=1, max_size=4))
def test_the_fast_plan_selects_the_same_members_as_the_plain_one(history, defs, minutes):
    query = DuckQuery(history)
    query.con.execute("create or replace table aud_customers as select cast(customer_key as varchar) as customer_key "
                      "from aud_customers union all select 'nobody'")  # and a customer without events
    known = {a.name: a for a in defs}
    for m in minutes:
        at = datetime.fromtimestamp(BASE + 60 * m + 0.5, timezone.utc)
        for a in defs:
            fast = sorted(query(*membership_sql(a, at, known))["customer_key"])
            assert fast == sorted(query(*plain(a, known, at))["customer_key"]), (a, at)


def test_profiles_are_read_without_a_self_join_and_with_the_same_members():
    con = duckdb.connect()
    con.execute("create table profiles as select 'c' || i as customer_key, i % 7 as orders_count from range(50) t(i)")
    con.execute("create table ev (customer_key varchar, event varchar, ts double, category varchar)")
    con.execute("insert into ev select 'c' || (i % 60), 'product viewed', ?, 'shoes' from range(200) t(i)", [BASE])
    at = datetime.fromtimestamp(BASE + 60, timezone.utc)
    audience = parse({"name": "a", "description": "d", "rule": {"all": [
        {"trait": "orders_count", "op": ">=", "value": 3},
        {"event": "product viewed", "count": ">= 4", "within": "1h"}]}})
    relations = Relations(customers="profiles", events="ev", traits="profiles")
    sql, params = membership_sql(audience, at, relations=relations)
    assert sql.count("profiles") == 1
    want = {f"c{i}" for i in range(50) if i % 7 >= 3 and sum(1 for j in range(200) if j % 60 == i) >= 4}
    assert want and {k for (k,) in con.execute(sql, params).fetchall()} == want


def test_the_per_customer_measures_run_on_fakesnow():
    import fakesnow
    import snowflake.connector

    at = datetime.fromtimestamp(BASE + 3600, timezone.utc)
    definition = parse({"name": "x", "description": "d", "traits": {"n": {"count": "product viewed", "within": "1d"}},
                        "rule": {"all": [
                            {"event": "product viewed", "where": {"category": ["it's"]}, "count": ">= 2", "within": "1d"},
                            {"computed": "n", "op": ">=", "value": 2},
                            {"event": "order completed", "exists": False, "within": "1d"}]}})
    sql, params = membership_sql(definition, at, dialect="snowflake")
    assert " JOIN (SELECT e.customer_key, SUM(CASE WHEN" in sql  # the grouped pass, not subqueries
    rows = [("a", "product viewed", "it's", None), ("a", "product viewed", "it's", None),
            ("b", "product viewed", "it's", None), ("b", "product viewed", "it's", None),
            ("b", "order completed", None, 5), ("c", "product viewed", "it's", None)]
    with fakesnow.patch():
        con = snowflake.connector.connect(database="db", schema="public", paramstyle="qmark")
        cur = con.cursor()
        cur.execute("create table aud_events (customer_key varchar, event varchar, ts double, category varchar, "
                    "value_minor int)")
        cur.execute("create table aud_customers (customer_key varchar)")
        cur.execute("insert into aud_customers values ('a'), ('b'), ('c'), ('d')")
        for key, event, category, value in rows:
            cur.execute("insert into aud_events values (?, ?, ?, ?, ?)", [key, event, BASE, category, value])
        cur.execute(sql, params)
        assert cur.fetchall() == [("a",)]
