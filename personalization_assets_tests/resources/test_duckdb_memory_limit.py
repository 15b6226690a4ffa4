"""The DuckDB warehouse and IO manager bound DuckDB's memory: configured, from the environment, or
a default derived from the machine's memory; a query larger than the limit spills instead of
growing the process."""

import dagster as dg
import pandas as pd
import pytest

from personalization_assets.resources.io_manager import AtomicDuckDBIOManager
from personalization_assets.resources.warehouse import (DEFAULT_MEMORY_CAP_MB, MEMORY_LIMIT_ENV, TEMP_DIRECTORY_ENV,
                                                        DuckDBWarehouse, duckdb_memory_limit)


def _setting(conn, name: str) -> str:
    return conn.scalar("select current_setting(?)", [name])


def test_default_is_a_quarter_of_memory_capped(monkeypatch):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    limit = duckdb_memory_limit()
    assert limit.endswith("MB") and 256 <= int(limit[:-2]) <= DEFAULT_MEMORY_CAP_MB == 768
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "900MB")
    assert duckdb_memory_limit() == "900MB"
    assert duckdb_memory_limit("2GB") == "2GB"  # configuration wins over the environment
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(ValueError, match="not a size"):
        duckdb_memory_limit()


def test_warehouse_sets_limit_and_spill_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "100MB")
    monkeypatch.setenv(TEMP_DIRECTORY_ENV, str(tmp_path / "spill"))
    with DuckDBWarehouse(database=str(tmp_path / "w.duckdb")).connect() as conn:
        assert _setting(conn, "memory_limit") in ("95.3 MiB", "100.0 MB")  # DuckDB shows it in its own unit
        assert _setting(conn, "temp_directory") == str(tmp_path / "spill")
        # A sort of ~150 MB of rows completes under 100 MB by spilling to the directory.
        conn.execute("create table big as select i, md5(i::varchar) || md5((i + 1)::varchar) as s "
                     "from range(1500000) t(i)")
        assert conn.scalar("select count(*) from (select * from big order by s desc)") == 1_500_000
    with DuckDBWarehouse(database=str(tmp_path / "w.duckdb"), memory_limit="1GB").connect() as conn:
        assert _setting(conn, "memory_limit") in ("953.6 MiB", "1.0 GB", "1000.0 MB")


def test_io_manager_connects_with_the_limit(tmp_path, monkeypatch):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    manager = AtomicDuckDBIOManager(database=str(tmp_path / "w.duckdb"), memory_limit="400MB")
    with manager._connect() as conn:
        assert _setting(conn, "memory_limit") in ("381.4 MiB", "400.0 MB")
    frame = pd.DataFrame({"a": [1, 2]})
    dg.materialize([dg.asset(key=["demo", "t"])(lambda: frame)], resources={"io_manager": manager})
    with manager._connect() as conn:
        assert conn.scalar("select sum(a) from demo.t") == 3
