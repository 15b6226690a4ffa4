"""membership_sql's faster plan (counts and sums in one grouped pass per customer, candidates first,
no self-join of the profiles; over the staged events, counts and sums per identity pair resolved once)
selects exactly the members of the plain plan (every event condition a correlated subquery over every
customer), on random histories and definitions, with exclusions."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import duckdb
from hypothesis import HealthCheck, given, settings, strategies as st

from personalization_assets.audiences.model import EVENT_COLUMNS, Group, conditions, parse
from personalization_assets.audiences.preview_events import event_table
from personalization_assets.audiences.sql import (Relations, evidence_leaves, membership_sql, predicate_sql,
                                                  row_conditions)
from personalization_assets.audiences.stream import StreamEvent
from personalization_assets.audiences.warehouse import CUSTOMERS_VIEW, EVENTS_VIEW, create_views
from personalization_assets.warehouse import WarehouseConnection

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


# Raw identities of an event: a user id, an anonymous id, or both; u1 and u2 are one customer (merged),
# d2 is a device stitched to that customer, d1 and d3 to others, u3 and d4 are known to nobody.
USERS = [None, "u1", "u2", "u3"]
DEVICES = [None, "d1", "d2", "d3", "d4"]
IDENTITY_MAP = [("user_id", "u1", "c1"), ("user_id", "u2", "c1"), ("anonymous_id", "d1", "c2"),
                ("anonymous_id", "d2", "c1"), ("anonymous_id", "d3", "c3")]


EVERYONE = parse({"name": "e", "rule": {"event": "product viewed", "count": ">= 0", "within": "1m"}}).rule


def staged_warehouse(history, ids, identity: bool) -> WarehouseConnection:
    """staging.events of `history` (the key of each event replaced by raw ids) and core.identity_map."""
    con = duckdb.connect()
    con.execute("create schema staging; create schema core; create schema marts; set TimeZone = 'UTC'")
    cols = ", ".join(f"{c} {'bigint' if c == 'value_minor' else 'varchar'}" for c in EVENT_COLUMNS)
    con.execute(f"create table staging.events (user_id varchar, anonymous_id varchar, event varchar, "
                f"timestamp timestamptz, received_at timestamptz, {cols})")
    for e, (user, device) in zip(history, ids):
        con.execute("insert into staging.events (user_id, anonymous_id, event, timestamp, received_at, category, "
                    "value_minor) values (?, ?, ?, to_timestamp(?), to_timestamp(?), ?, ?)",
                    [user, device, e.event, e.ts, e.received, e.props.get("category"), e.props.get("value_minor")])
    con.execute("create table core.identity_map (identity_type varchar, identity varchar, customer_key varchar)")
    if identity:
        con.executemany("insert into core.identity_map values (?, ?, ?)", IDENTITY_MAP)
    conn = WarehouseConnection(con, "duckdb")
    create_views(conn, "duckdb", has_identity=identity)
    return conn


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=events(), defs=audiences(), minutes=st.lists(st.integers(0, 200), min_size=1, max_size=3),
       ids=st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(DEVICES)), min_size=12, max_size=12),
       identity=st.booleans())
def test_counts_and_sums_per_identity_pair_select_the_same_members_as_per_event(history, defs, minutes, ids,
                                                                                  identity):
    conn = staged_warehouse(history, ids, identity)
    conn.execute(f"create table customers as select customer_key from {CUSTOMERS_VIEW} union all select 'nobody'")
    known = {a.name: a for a in defs}
    per_event = Relations(customers="customers", events=EVENTS_VIEW)
    staged = Relations(customers="customers", events=EVENTS_VIEW, staged="staging.events",
                       identities="core.identity_map" if identity else None)
    for m in minutes:
        at = datetime.fromtimestamp(BASE + 60 * m + 0.5, timezone.utc)
        for a in defs:
            want = sorted(conn.query(*plain(a, known, at, per_event))["customer_key"], key=repr)  # None: no id
            assert sorted(conn.query(*membership_sql(a, at, known, staged))["customer_key"], key=repr) == want, (a, at)
            # and with only what row_conditions names copied row by row (what the preview does)
            table = event_table(conn, "rows", row_conditions(a, known, staged), at, staged.identities)
            got = conn.query(*membership_sql(a, at, known, replace(staged, events=table),
                                             evidence=True))
            assert sorted(got["customer_key"], key=repr) == want, (a, at)
            # every customer a member (its rule or a count >= 0), each leaf shown as the leaf alone decides it
            wide = replace(a, rule=Group("any", (a.rule, EVERYONE)), exclusions=())
            shown = conn.query(*membership_sql(wide, at, known, staged, evidence=True))
            leaves = list(conditions(wide.rule))
            assert evidence_leaves(wide, known)[-1] == len(leaves) - 1
            for i in evidence_leaves(wide, known):
                alone = replace(a, rule=leaves[i], exclusions=())
                meets = set(conn.query(*membership_sql(alone, at, known, per_event))["customer_key"])
                assert {k for k, met in zip(shown["customer_key"], shown[f"ev{i}"]) if met} == meets, (a, i, at)


def test_a_customer_seen_under_several_identity_pairs_counts_and_sums_all_their_events():
    """c1 is u1, u2 and the device d2 (u3 is nobody's): three views and 900 spent under five identity pairs."""
    ids = [("u1", "d1"), ("u2", None), ("u3", "d2"), (None, "d2"), ("u1", None)]
    history = [StreamEvent(BASE - 60 * i, "k", "product viewed", BASE) for i in range(3)] + [
        StreamEvent(BASE - 30, "k", "order completed", BASE, {"value_minor": 400}),
        StreamEvent(BASE - 20, "k", "order completed", BASE, {"value_minor": 500})]
    conn = staged_warehouse(history, ids, identity=True)
    conn.execute("create table customers as select 'c' || i as customer_key from range(4) t(i)")
    definition = parse({"name": "x", "description": "d", "rule": {"all": [
        {"event": "product viewed", "count": ">= 3", "within": "1h"},
        {"event": "order completed", "sum": "value_minor", "is": "= 900", "within": "1h"}]}})
    at = datetime.fromtimestamp(BASE + 1, timezone.utc)
    for staged in ("staging.events", None):
        relations = Relations(customers="customers", events=EVENTS_VIEW, staged=staged, identities="core.identity_map")
        assert list(conn.query(*membership_sql(definition, at, relations=relations))["customer_key"]) == ["c1"]


def test_counts_and_sums_over_the_staged_events_read_no_event_row_by_row():
    definition = parse({"name": "browsers", "description": "d", "traits": {"v": {"count": "product viewed",
                                                                                  "within": "7d"}},
                        "rule": {"all": [{"computed": "v", "op": ">=", "value": 3},
                                         {"event": "order completed", "exists": False, "within": "7d"}]}})
    staged = Relations(customers="customers", events="no_such_table", staged="staging.events",
                       identities="core.identity_map")
    assert row_conditions(definition, relations=staged) == []
    assert len(row_conditions(definition, relations=Relations())) == 2
    history = [StreamEvent(BASE - 60 * i, "k1", "product viewed", BASE) for i in range(3)]
    conn = staged_warehouse(history, [("u1", "d1")] * len(history), identity=True)
    conn.execute("create table customers as select 'c1' as customer_key")
    at = datetime.fromtimestamp(BASE + 1, timezone.utc)
    assert list(conn.query(*membership_sql(definition, at, relations=staged))["customer_key"]) == ["c1"]


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
