"""The language: clear one-line errors, unknown top-level keys kept, SQL structure fixed by the
definition's shape (values are bound, never spliced), and batch-only traits refused by the stream."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlglot

from personalization_assets.audiences.model import DefinitionError, parse
from personalization_assets.audiences.sql import changes_sql, membership_sql
from personalization_assets.audiences.stream import AudienceStream, StreamEvent, StreamUnsupported

from .helpers import DuckQuery

AT = datetime(2026, 1, 2, tzinfo=timezone.utc)
BASE = AT.timestamp() - 3600
NASTY = ["it's", "x' or '1'='1", "'); drop table aud_events; --", "select * from aud_customers",
         "Straße 🛒", '"quoted"', "\\", "%_"]


def shoes(value: str, event: str = "product viewed") -> dict:
    return {"name": "fans", "description": "d", "holdout": "10%",
            "traits": {"top": {"most_frequent": "category", "of": event, "within": "30d"}},
            "rule": {"all": [
                {"event": event, "where": {"category": [value]}, "count": ">= 1", "within": "7d"},
                {"computed": "top", "op": "=", "value": value},
                {"event": event, "exists": True, "between": ["0m", "7d"],
                 "not_followed_by": {"event": "order completed", "where": {"sku": [value]}}}]}}


@pytest.mark.parametrize("dialect", ["duckdb", "snowflake"])
def test_values_never_change_the_sql_structure(dialect):
    reference, _ = membership_sql(parse(shoes("plain")), AT, dialect=dialect)
    for value in NASTY:
        for definition in (shoes(value), shoes("plain", event=value)):
            sql, params = membership_sql(parse(definition), AT, dialect=dialect)
            assert sql == reference
            assert value in params or value.lower() in params
            assert len(sqlglot.parse(sql, read=dialect)) == 1  # one statement, whatever the value


def test_nasty_values_in_definitions_and_data_select_exactly_the_right_people():
    history = [StreamEvent(BASE + i, f"k'{i}; drop", "product viewed", BASE + i, {"category": v})
               for i, v in enumerate(NASTY)]
    query = DuckQuery(history)
    for i, value in enumerate(NASTY):
        sql, params = membership_sql(parse(shoes(value)), AT)
        assert list(query(sql, params)["customer_key"]) == [f"k'{i}; drop"]
    assert len(query("select * from aud_events", [])) == len(NASTY)  # nothing dropped


def test_entered_and_exited_between_two_instants():
    history = [StreamEvent(BASE, "a", "product viewed", BASE), StreamEvent(BASE - 86400 * 8 + 1800, "b", "product viewed", BASE)]
    definition = parse({"name": "viewers", "description": "d",
                        "rule": {"event": "product viewed", "exists": True, "within": "8d"}})
    sql, params = changes_sql(definition, datetime.fromtimestamp(BASE - 1, timezone.utc), AT)
    got = sorted(map(tuple, DuckQuery(history)(sql, params).to_numpy().tolist()))
    assert got == [("a", "entered"), ("b", "exited")]


@pytest.mark.parametrize("rule, message", [
    ({"event": "x", "count": ">= 3"}, "needs `within: 7d` or `between: [1h, 7d]`"),
    ({"event": "x", "count": "lots", "within": "7d"}, "'lots' is not a comparison"),
    ({"event": "x", "exists": True, "within": "7 days"}, "bad duration '7 days'"),
    ({"event": "x", "exists": True, "between": ["7d", "1h"]}, "the first must be shorter"),
    ({"event": "x", "exists": True, "within": "1d", "where": {"category; drop table t": "a"}}, "cannot filter on"),
    ({"event": "x", "sum": "category", "is": ">= 1", "within": "1d"}, "column 'category' unknown"),
    ({"event": "x", "exists": True, "within": "1d", "windw": "2d"}, "unknown key(s) ['windw']"),
    ({"computed": "nope", "op": "=", "value": 1}, "'nope' is not declared under traits:"),
    ({"trait": "orders_count", "op": "~", "value": 1}, "op '~' must be one of"),
    ({"any": []}, "any needs a non-empty list"),
])
def test_bad_definitions_get_one_line_errors_naming_the_place(rule, message):
    with pytest.raises(DefinitionError) as err:
        parse({"name": "bad", "description": "d", "rule": {"all": [rule]}}, origin="bad.yaml")
    text = str(err.value)
    assert message in text and text.startswith("bad.yaml: audience 'bad': rule/all[0]") and "\n" not in text


def test_unknown_top_level_keys_such_as_holdout_are_kept():
    assert parse(shoes("a")).extra == {"holdout": "10%"}


def test_stream_refuses_a_batch_only_trait_in_one_line_naming_it():
    definition = parse({"name": "loyal", "description": "d", "rule": {"all": [
        {"event": "product viewed", "exists": True, "within": "1d"},
        {"trait": "orders_count", "op": ">=", "value": 2}]}})
    with pytest.raises(StreamUnsupported, match=r"condition \{trait: orders_count, op: >=, value: 2\} "
                                                r"uses profile trait 'orders_count', which is batch-only"):
        AudienceStream([definition])


def test_the_snowflake_text_runs_on_fakesnow_with_qmark_binds():
    import fakesnow
    import snowflake.connector

    definition = parse({"name": "x", "description": "d",
                        "traits": {"top": {"most_frequent": "category", "of": "product viewed", "within": "30d"}},
                        "rule": {"all": [{"event": "product viewed", "exists": True, "between": ["0m", "1d"],
                                          "not_followed_by": {"event": "order completed", "within": "1h"}},
                                         {"computed": "top", "op": "=", "value": "it's"}]}})
    with fakesnow.patch():
        con = snowflake.connector.connect(database="db", schema="public", paramstyle="qmark")
        cur = con.cursor()
        cur.execute("create table aud_events (customer_key varchar, event varchar, ts double, category varchar)")
        cur.execute("create table aud_customers (customer_key varchar)")
        cur.execute("insert into aud_customers values ('a'), ('b'), ('c')")
        cur.execute("insert into aud_events values (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?), (?, ?, ?, ?)",
                    ["a", "product viewed", BASE, "it's", "b", "product viewed", BASE, "it's",
                     "b", "order completed", BASE + 60, None, "c", "product viewed", BASE, "shoes"])
        sql, params = membership_sql(definition, AT, dialect="snowflake")
        cur.execute(sql, params)
        assert cur.fetchall() == [("a",)]
