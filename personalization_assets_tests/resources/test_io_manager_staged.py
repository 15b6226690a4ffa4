"""A step's `StagedTable` output (written in the warehouse by the step) is renamed into place by the
IO manager's commit, with its commit group, all or nothing; golden records are written into a
table chunk by chunk, with the types a chunk of nulls cannot tell."""

import duckdb
import pandas as pd
import pytest

from personalization_assets.identity.warehouse_outputs import golden_in_chunks
from personalization_assets.resources.io_manager import COMMITS, StagedTable, TableStateError, commit_tables


def _tables(duck, schema: str) -> list[str]:
    return sorted(duck.query("select table_name from information_schema.tables where table_schema = ?",
                             [schema])["table_name"])


def test_a_staged_table_is_renamed_into_place_with_its_group(duck):
    duck.ensure_schema("core")
    duck.execute("create table core.customers as select 'old' as customer_key")
    duck.execute("create table core._staged_customers as select * from (values ('a', 1), ('b', 2)) t(customer_key, n)")
    commit_tables(duck, {"core.customers": StagedTable("core._staged_customers"),
                         "core.customer_crosswalk": pd.DataFrame({"record_id": ["r1", "r2", "r3"]})}, run_id="r1")
    assert _tables(duck, "core") == ["customer_crosswalk", "customers"]
    assert duck.query("select * from core.customers order by 1").to_dict("list") == {"customer_key": ["a", "b"],
                                                                                       "n": [1, 2]}
    recorded = duck.query(f"select table_name, row_count from {'.'.join(COMMITS)} order by 1")
    assert recorded.to_dict("list") == {"table_name": ["core.customer_crosswalk", "core.customers"],
                                        "row_count": [3, 2]}


def test_a_missing_staged_table_commits_nothing_of_its_group(duck):
    duck.ensure_schema("core")
    duck.execute("create table core.customers as select 'old' as customer_key")
    duck.execute("create table core.customer_crosswalk as select 'r0' as record_id")
    duck.execute("create table core._staged_customers as select 'new' as customer_key")
    with pytest.raises(TableStateError, match="core._staged_evidence for core.merge_evidence does not exist"):
        commit_tables(duck, {"core.customers": StagedTable("core._staged_customers"),
                             "core.customer_crosswalk": pd.DataFrame({"record_id": ["r1"]}),
                             "core.merge_evidence": StagedTable("core._staged_evidence")}, run_id="r1")
    assert duck.scalar("select customer_key from core.customers") == "old"
    assert duck.scalar("select record_id from core.customer_crosswalk") == "r0"
    assert _tables(duck, "core") == ["_staged_customers", "customer_crosswalk", "customers"]
    assert not duck.scalar(f"select count(*) from {'.'.join(COMMITS)}")


def test_a_staged_table_in_another_schema_is_refused(duck):
    duck.ensure_schema("core")
    duck.ensure_schema("staging")
    duck.execute("create table staging._staged as select 1 as n")
    with pytest.raises(ValueError, match="must be in core.customers's schema"):
        commit_tables(duck, {"core.customers": StagedTable("staging._staged")}, run_id="r1")
    assert _tables(duck, "core") == [] and _tables(duck, "staging") == ["_staged"]


def test_golden_in_chunks_writes_every_cluster_with_the_source_types():
    con = duckdb.connect()
    n = 40
    con.execute(f"""create table src as select 'r' || lpad(i::varchar, 3, '0') as record_id,
        case when i = 7 then timestamp '2026-01-02 03:04:05' end as seen,
        case when i = 11 then 'x' end as note from range({n}) t(i)""")
    con.execute("create table xwalk as select record_id, 'cus_' || (right(record_id, 2)::int // 2) as customer_key "
                "from src")

    def one_per_cluster(records: pd.DataFrame, keys: pd.Series) -> pd.DataFrame:
        first = records.assign(customer_key=keys.to_numpy()).groupby("customer_key", sort=True).first()
        return pd.DataFrame({  # object columns of None: a chunk without a value holds Arrow nulls
            "customer_key": first.index.to_numpy(),
            "seen": [None if pd.isna(v) else v for v in first["seen"]],
            "note": [None if pd.isna(v) else v for v in first["note"]],
            "unknown": [None] * len(first)})

    rows = golden_in_chunks(con, "src", ["record_id", "seen", "note"], "xwalk", one_per_cluster, "golden",
                            chunk_records=4)
    assert rows == n // 2 == con.execute("select count(distinct customer_key) from golden").fetchone()[0]
    types = dict(con.execute("select column_name, data_type from information_schema.columns "
                             "where table_name = 'golden'").fetchall())
    assert types == {"customer_key": "VARCHAR", "seen": "TIMESTAMP", "note": "VARCHAR", "unknown": "VARCHAR"}
    assert con.execute("select customer_key, seen, note from golden where seen is not null or note is not null "
                       "order by 1").fetchall() == [("cus_3", pd.Timestamp("2026-01-02 03:04:05").to_pydatetime(),
                                                     None), ("cus_5", None, "x")]
    assert "_golden_in" not in {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
