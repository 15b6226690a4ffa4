"""Shared test helpers: real local services and the shared datasets.

Tests that need a service skip with a reason when it is down, except under CI=true, where a
missing service is a failure: CI must run them, never skip them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def service_up(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(host: str, port: int, name: str) -> None:
    """Skip (or, under CI=true, fail) when `name` is not listening on host:port."""
    if service_up(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; under CI=true this test must run (start {name} first)")
    pytest.skip(message)


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping (or failing under CI) when the dataset is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"shared dataset not found: {path}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def postgres_url() -> str:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    return "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture
def redis_url() -> str:
    require_service("127.0.0.1", 6379, "Redis")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def local_env(tmp_path, monkeypatch) -> Path:
    """Point the platform's files at a temporary directory (local deployment)."""
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "local")
    for var in ("CRM_DATABASE_URL", "EVENT_BUS_URL", "ORDERS_API_URL", "PERSONALIZATION_DUCKDB_PATH"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "data"


@pytest.fixture
def duck():
    """An in-memory DuckDB warehouse connection."""
    import duckdb

    from personalization_assets.resources.warehouse import WarehouseConnection

    raw = duckdb.connect(":memory:")
    yield WarehouseConnection(raw, "duckdb")
    raw.close()
