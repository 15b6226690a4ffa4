"""An input's metadata `columns` makes the IO manager read only those columns of the table;
`query_arrow_strings` reads text as Arrow-backed
strings (core.customers reads ~20 of staging.customers' ~30 columns that way)."""

import dagster as dg
import duckdb
import pandas as pd

from personalization_assets.resources.io_manager import AtomicDuckDBIOManager
from personalization_assets.warehouse import WarehouseConnection, query_arrow_strings

SEEN = {}


@dg.asset(key=["staging", "wide"])
def wide() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b", "c"], "n": [1, 2, 3], "payload": ["{...}", "{}", None]})


@dg.asset(key=["core", "narrow"], ins={"rows": dg.AssetIn(key=["staging", "wide"], metadata={"columns": ["n", "id"]})})
def narrow(rows: pd.DataFrame) -> pd.DataFrame:
    SEEN["narrow"] = rows
    return rows


@dg.asset(key=["core", "whole"], ins={"rows": dg.AssetIn(key=["staging", "wide"])})
def whole(rows: pd.DataFrame) -> pd.DataFrame:
    SEEN["whole"] = rows
    return rows


def test_input_columns_are_the_only_ones_read(tmp_path):
    result = dg.materialize([wide, narrow, whole],
                            resources={"io_manager": AtomicDuckDBIOManager(database=str(tmp_path / "w.duckdb"))})
    assert result.success
    assert list(SEEN["narrow"].columns) == ["n", "id"]
    assert SEEN["narrow"].sort_values("id")["n"].tolist() == [1, 2, 3]
    assert list(SEEN["whole"].columns) == ["id", "n", "payload"]


def test_arrow_strings_change_only_the_text_columns():
    con = duckdb.connect()
    con.execute("""create table t as select i::bigint as n, case when i = 1 then null else i end as maybe_n,
                   'r' || i as text, case when i % 2 = 0 then null else 'x' end as gaps,
                   timestamptz '2026-01-01 10:00:00+00' + i * interval 1 hour as at, i % 3 = 0 as flag,
                   case when i = 2 then null else i % 2 = 0 end as maybe_flag, i / 4 as ratio
                   from range(300000) r(i)""")
    conn, sql = WarehouseConnection(con, "duckdb"), "select * from t where n >= ?"
    plain, arrow = conn.query(sql, [1]), query_arrow_strings(conn, sql, [1])
    assert list(arrow.columns) == list(plain.columns) and len(arrow) == len(plain) == 299_999
    for col in plain.columns:
        if col in ("text", "gaps"):
            assert isinstance(arrow[col].dtype, pd.ArrowDtype)
            assert arrow[col].astype(object).where(arrow[col].notna(), None).tolist() == plain[col].tolist()
        else:  # typed exactly as conn.query types them, rows in the same order
            pd.testing.assert_series_equal(arrow[col], plain[col])
    empty = query_arrow_strings(conn, "select * from t where false")
    assert list(empty.columns) == list(plain.columns) and empty.empty
