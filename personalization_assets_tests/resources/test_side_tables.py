"""`side_tables`, on DuckDB and on Snowflake's SQL (fakesnow): rows appended a committed chunk at a
time replace what the swap's body deletes, in one transaction; a run cut short, by an exception or
a crash, leaves the target as it was, and the next run starts clean."""

import duckdb
import pandas as pd
import pytest

from personalization_assets.side_tables import side_tables
from personalization_assets.warehouse import WarehouseConnection


@pytest.fixture(params=["duckdb", "snowflake"])
def conn(request):
    if request.param == "duckdb":
        raw = duckdb.connect(":memory:")
        yield WarehouseConnection(raw, "duckdb")
        raw.close()
        return
    from personalization_assets_tests.marts.conftest import fakesnow_connection

    with fakesnow_connection() as snow:
        yield snow


def _rows(day: int, ids: list[str], n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "day": day, "n": n})


def _target(conn) -> pd.DataFrame:
    """staging.t: ids a, b on day 1 and c on day 2."""
    rows = pd.concat([_rows(1, ["a", "b"], 0), _rows(2, ["c"], 0)], ignore_index=True)
    conn.prepare_table("staging", "t", rows)
    conn.insert_frame("staging", "t", rows)
    return _read(conn)


def _read(conn, table: str = "staging.t") -> pd.DataFrame:
    frame = conn.query(f"select id, day, n from {table} order by id")
    return frame.astype({"day": "int64", "n": "int64"})


def _sides(conn) -> list[str]:
    return [s for s in ("staging", "marts") if conn.table_exists(s, "t__side")]


def _restage_day_one(conn, fail_at: str | None = None) -> None:
    """Day 1 again in two chunks (a dropped, b changed, d new), replacing day 1 in one swap."""
    with side_tables(conn, "staging", ["t"], "__side") as sides:
        sides.create_like_targets()
        sides.append({"t": _rows(1, ["b"], 1)})
        assert _read(conn, sides.side("t"))["id"].tolist() == ["b"]  # committed beside the target
        if fail_at == "between chunks":
            raise RuntimeError(fail_at)
        sides.append({"t": _rows(1, ["d"], 1)})
        with sides.swap():
            conn.execute("delete from staging.t where day = ?", [1])
            if fail_at == "in the swap":
                raise RuntimeError(fail_at)


def test_a_swap_replaces_what_its_body_deletes(conn):
    _target(conn)
    _restage_day_one(conn)
    expected = pd.concat([_rows(1, ["b"], 1), _rows(2, ["c"], 0), _rows(1, ["d"], 1)], ignore_index=True)
    pd.testing.assert_frame_equal(_read(conn), expected)
    assert _sides(conn) == []


@pytest.mark.parametrize("fail_at", ["between chunks", "in the swap"])
def test_a_failure_leaves_the_target_as_it_was_and_no_side_table(conn, fail_at):
    before = _target(conn)
    with pytest.raises(RuntimeError, match=fail_at):
        _restage_day_one(conn, fail_at)
    pd.testing.assert_frame_equal(_read(conn), before)
    assert _sides(conn) == []


def test_the_next_run_drops_a_side_table_a_crash_left_behind(conn):
    """A killed process never reaches its `finally`: its side table, with the rows it had
    committed, is still there when the next run starts."""
    _target(conn)
    conn.execute("create table staging.t__side as select * from staging.t")  # a's row among them
    _restage_day_one(conn)
    assert _read(conn)["id"].tolist() == ["b", "c", "d"]
    assert _sides(conn) == []


def test_a_side_table_made_from_the_frames_swaps_in_by_column_name(conn):
    """In a schema that does not exist yet, the side table typed like the first frame; the target
    with its columns in another order."""
    with side_tables(conn, "marts", ["t"], "__side") as sides:
        sides.insert("t", _rows(3, ["x", "y"], 7))
        sides.insert("t", _rows(3, ["z"], 8))
        conn.execute("create table marts.t (n bigint, id varchar, day bigint)")
        conn.execute("insert into marts.t values (0, 'old', 1)")
        with sides.swap(["id", "day", "n"]):
            conn.execute("delete from marts.t")
    pd.testing.assert_frame_equal(_read(conn, "marts.t"), pd.concat(
        [_rows(3, ["x", "y"], 7), _rows(3, ["z"], 8)], ignore_index=True))
    assert _sides(conn) == []
