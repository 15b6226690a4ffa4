"""The demo runs its steps with DuckDB's memory limit at 512 MB, unless the user set one."""

from __future__ import annotations

from personalization_assets.demo.run import demo_duckdb_memory_limit
from personalization_assets.resources.warehouse import MEMORY_LIMIT_ENV, duckdb_memory_limit


def test_the_demo_limits_duckdb_only_while_it_runs(monkeypatch):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    default = duckdb_memory_limit()
    with demo_duckdb_memory_limit():
        assert duckdb_memory_limit() == "512MB"
    assert duckdb_memory_limit() == default


def test_a_limit_the_user_set_wins(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "800MB")
    with demo_duckdb_memory_limit():
        assert duckdb_memory_limit() == "800MB"
    assert duckdb_memory_limit() == "800MB"
