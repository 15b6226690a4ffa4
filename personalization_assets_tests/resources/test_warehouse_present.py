"""`WarehouseConnection.query_in` (a query for a list of values) and `present` (which of some values
a column holds, compared as text), on DuckDB (one registered relation) and on Snowflake's SQL (bound
IN lists in chunks)."""

from __future__ import annotations

import duckdb

from personalization_assets.warehouse import WarehouseConnection


def _present_finds_only_what_the_table_holds(conn) -> None:
    conn.execute("create schema if not exists staging")
    conn.execute("create or replace table staging.customers (source_id varchar, name varchar)")
    for i in range(0, 30, 3):
        conn.execute("insert into staging.customers values (?, ?)", [str(1000 + i), "n"])
    conn.execute("insert into staging.customers values (?, ?)", ["1003", "twice"])  # duplicates give one value
    asked = [str(1000 + i) for i in range(30)] + ["1003", "", "x"]
    assert conn.present("staging.customers", "source_id", asked) == {str(1000 + i) for i in range(0, 30, 3)}
    assert conn.present("staging.customers", "source_id", []) == set()
    assert conn.present("staging.customers", "source_id", ["nobody"]) == set()
    # the params bind before the values, in every chunk; each value asked once
    sql = "select source_id, name from staging.customers where name = ? and source_id in ({values})"
    found = conn.query_in(sql, asked, ["n"], chunk=7)
    assert sorted(found["source_id"]) == sorted(str(1000 + i) for i in range(0, 30, 3))
    assert set(found["name"]) == {"n"}
    assert list(conn.query_in(sql, asked, ["twice"], chunk=7).itertuples(index=False, name=None)) == [("1003", "twice")]
    nothing = conn.query_in(sql, [], ["n"])
    assert nothing.empty and list(nothing.columns) == ["source_id", "name"]


def test_present_on_duckdb():
    _present_finds_only_what_the_table_holds(WarehouseConnection(duckdb.connect(":memory:"), "duckdb"))


def test_present_on_fakesnow():
    from personalization_assets_tests.marts.conftest import fakesnow_connection

    with fakesnow_connection() as conn:
        _present_finds_only_what_the_table_holds(conn)
