"""A staging table validated a chunk at a time from the warehouse finds what the whole-frame
Pandera check finds, including a duplicate whose two rows fall in different chunks, and fails
when it should; the uniqueness SQL also runs on fakesnow."""

from __future__ import annotations

import gc

import dagster as dg
import pandas as pd
import pytest

from personalization_assets.assets.checks import pandera_asset_check
from personalization_assets.heap import collections_paused
from personalization_assets.quality.checks import run_model
from personalization_assets.quality.table_checks import (
    DUCKDB_VECTOR, duplicate_failures, read_chunks, validate_chunks, validate_table,
)
from personalization_assets.resources.warehouse import DuckDBWarehouse
from personalization_assets.schemas.tables import StagingEvents, StagingOrderLines
from personalization_assets.warehouse import connect_duckdb

ROWS = 5_000  # three DuckDB chunks of 2,048 rows (its smallest)
SPLIT = (10, 4_000)  # the duplicate's two rows: first and second chunk


def _events(n: int = ROWS, bad: bool = True) -> pd.DataFrame:
    at = pd.Timestamp("2026-01-01T00:00Z")
    frame = pd.DataFrame({
        "message_id": [f"m{i}" for i in range(n)], "type": ["track"] * n, "event": ["Product Viewed"] * n,
        "user_id": [f"u{i % 50}" for i in range(n)], "anonymous_id": [None] * n,
        "timestamp": pd.date_range(at, periods=n, freq="s"), "received_at": pd.date_range(at, periods=n, freq="s"),
        "currency": ["EUR"] * n, "value_minor": [100.0] * n, "payload": ["{}"] * n})  # payload: not modelled
    if bad:
        frame.loc[SPLIT[1], "message_id"] = frame.loc[SPLIT[0], "message_id"]  # across two chunks
        frame.loc[[3, 2_100, 4_500], "type"] = "purchase"
        frame.loc[[7, 4_999], "currency"] = "XXY"
        frame.loc[2_500, ["user_id", "anonymous_id"]] = None
        frame.loc[1_000, "value_minor"] = -1.0
        frame.loc[[20, 21], "message_id"] = None  # not null fails; nulls are not duplicates
    return frame


def _summary(failures: list[dict]) -> dict:
    return {(f["column"], f["check"]): (f["count"], sorted(map(str, f["examples"]))) for f in failures}


def _rows(failures: list[dict]) -> dict:
    return {(f["column"], f["check"]): (f["count"], sorted(map(str, f["examples"])), sorted(f["example_rows"]))
            for f in failures}


@pytest.fixture
def warehouse(tmp_path):
    database = str(tmp_path / "warehouse.duckdb")
    with connect_duckdb(database) as conn:
        conn.execute("create schema staging")
        conn.raw.register("_frame", _events())
        conn.execute("create table staging.events as select * from _frame")
        conn.raw.unregister("_frame")
    return database


def test_chunks_find_what_the_whole_frame_finds():
    frame = _events()
    whole = run_model(StagingEvents, frame)
    chunks = [frame.iloc[i:i + 700] for i in range(0, ROWS, 700)]
    rows, chunked = validate_chunks(StagingEvents, chunks)
    assert rows == ROWS
    unique = [f for f in whole if f["check"] == "field_uniqueness"]
    assert unique and unique[0]["count"] == 2  # the whole frame sees the duplicate ...
    assert not [f for f in chunked if f["check"] == "field_uniqueness"]  # ... a chunk alone cannot
    # every other failure: same counts, examples and row numbers (counted from the first chunk)
    assert _rows(chunked) == _rows([f for f in whole if f["check"] != "field_uniqueness"])


def test_a_chunks_frames_are_gone_before_the_next_chunk():
    """pandas and Pandera leave each validated chunk in reference cycles (a frame and its cached
    accessor); the check collects them per chunk, so what is alive does not grow with the chunks
    read. Automatic collection is off here, as it in effect is between the rare collections of
    the oldest generation."""
    frames_alive = []

    def chunks():
        for start in range(0, ROWS, 500):
            frames_alive.append(sum(isinstance(o, pd.DataFrame) for o in gc.get_objects()))
            yield _events(bad=False).iloc[start:start + 500].copy()

    with collections_paused():
        rows, failures = validate_chunks(StagingEvents, chunks())
    assert rows == ROWS and failures == [] and len(frames_alive) == 10
    assert frames_alive[-1] <= frames_alive[1], frames_alive


def _whole_frame() -> list[dict]:
    """The whole-frame check on what the table check reads: the model's columns (a dataframe-level
    check reports its failing rows once per column it is given)."""
    return run_model(StagingEvents, _events()[list(StagingEvents.to_schema().columns)])


def test_table_check_equals_the_whole_frame_check_on_duckdb(warehouse):
    whole = _whole_frame()
    with connect_duckdb(warehouse) as conn:
        rows, failures = validate_table(conn, "staging.events", StagingEvents, chunk_rows=DUCKDB_VECTOR)
    assert rows == ROWS
    assert _summary(failures) == _summary(whole)
    assert _summary(failures)[("message_id", "field_uniqueness")] == (2, ["m10", "m10"])
    with connect_duckdb(warehouse) as conn:  # keys grouped a hash partition of ~7 rows at a time: the same
        partitioned = duplicate_failures(conn, "staging.events", StagingEvents, partition_rows=7)
    assert partitioned == [f for f in failures if f["check"] == "field_uniqueness"]


def test_a_table_is_read_in_bounded_chunks(warehouse):
    with connect_duckdb(warehouse) as conn:
        sizes = [len(f) for f in read_chunks(conn, "select message_id from staging.events", rows=DUCKDB_VECTOR)]
        assert sum(sizes) == ROWS and max(sizes) <= DUCKDB_VECTOR and len(sizes) == 3
        empty = list(read_chunks(conn, "select message_id, received_at from staging.events where 1 = 0"))
    assert len(empty) == 1 and empty[0].empty and list(empty[0].columns) == ["message_id", "received_at"]


def test_a_where_condition_narrows_the_check(warehouse):
    with connect_duckdb(warehouse) as conn:
        rows, failures = validate_table(conn, "staging.events", StagingEvents, "received_at < ?",
                                        [pd.Timestamp("2026-01-01T00:00:30Z")], chunk_rows=DUCKDB_VECTOR)
    assert rows == 30  # rows 0-29: the type at 3, currency at 7 and the two null ids; no duplicate
    assert set(_summary(failures)) == {("type", "isin(['track', 'identify', 'page', 'screen', 'group', 'alias'])"),
                                       ("currency", "iso_4217"), ("message_id", "not_nullable")}


def _lines() -> pd.DataFrame:
    return pd.DataFrame({
        "order_id": ["o1", "o1", "o2", "o1", None, None, "o3"], "line_no": [1, 1, 1, 1, 2, 2, 1],
        "sku": ["s"] * 7, "product_name": [None] * 7, "category": [None] * 7, "quantity": [1] * 7,
        "unit_price_minor": [1] * 7, "line_total_minor": [1] * 7, "currency": ["EUR"] * 7})


def _duplicates_equal_pandera(conn) -> None:
    conn.execute("create schema if not exists staging")
    conn.execute("create or replace table staging.order_lines (order_id varchar, line_no integer, sku varchar, "
                 "product_name varchar, category varchar, quantity integer, unit_price_minor integer, "
                 "line_total_minor integer, currency varchar)")
    for row in _lines().itertuples(index=False):
        conn.execute("insert into staging.order_lines values (?, ?, ?, ?, ?, ?, ?, ?, ?)", list(row))
    sql = _summary(duplicate_failures(conn, "staging.order_lines", StagingOrderLines))
    pandera = {k: v for k, v in _summary(run_model(StagingOrderLines, _lines())).items()
               if k[1] == "multiple_fields_uniqueness"}
    assert sql == pandera  # nulls of a several-column key compare equal, and are not reported
    assert sql[("order_id", "multiple_fields_uniqueness")][0] == 3
    assert sql[("line_no", "multiple_fields_uniqueness")][0] == 5


def test_several_column_uniqueness_in_sql_equals_pandera_on_duckdb(duck):
    _duplicates_equal_pandera(duck)
    whole = duplicate_failures(duck, "staging.order_lines", StagingOrderLines)
    for rows in (1, 2, 3):  # every key's rows in one hash partition, the first examples of all of them kept
        assert duplicate_failures(duck, "staging.order_lines", StagingOrderLines, partition_rows=rows) == whole


def test_several_column_uniqueness_in_sql_equals_pandera_on_fakesnow():
    from personalization_assets_tests.marts.conftest import fakesnow_connection

    with fakesnow_connection() as conn:
        _duplicates_equal_pandera(conn)


def _materialize_check(database: str):
    check = pandera_asset_check(["staging", "events"], StagingEvents, in_warehouse=True, chunk_rows=DUCKDB_VECTOR)
    result = dg.materialize([dg.AssetSpec(["staging", "events"]), check], selection=dg.AssetSelection.checks(check),
                            resources={"warehouse": DuckDBWarehouse(database=database)}, raise_on_error=False)
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_the_asset_check_fails_with_the_failures_in_its_metadata(warehouse):
    evaluation = _materialize_check(warehouse)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    metadata = evaluation.metadata
    assert metadata["rows"].value == ROWS
    failures = {(f["column"], f["check"]): f for f in metadata["failures"].value}
    assert failures[("message_id", "field_uniqueness")]["count"] == 2
    assert _summary(metadata["failures"].value) == _summary(_whole_frame())
    assert metadata["failed_checks"].value == len(failures)
    assert metadata["failed_cases"].value == sum(f["count"] for f in _whole_frame())
    assert "| message_id | field_uniqueness | 2 |" in metadata["failures_table"].value


def test_the_asset_check_passes_a_valid_table(tmp_path):
    database = str(tmp_path / "valid.duckdb")
    with connect_duckdb(database) as conn:
        conn.execute("create schema staging")
        conn.raw.register("_frame", _events(bad=False))
        conn.execute("create table staging.events as select * from _frame")
    evaluation = _materialize_check(database)
    assert evaluation.passed
    assert evaluation.metadata["rows"].value == ROWS and evaluation.metadata["failed_cases"].value == 0
