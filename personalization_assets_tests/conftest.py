"""Shared test helpers: real local services, system tools and the vendored data fixtures.

Tests that need a service or a tool skip with a reason when it is missing, except under CI=true,
where that is a failure: CI must run them, never skip them. Real data come from small slices
in `fixtures/` (each with a SOURCE.md), never from a folder beside the repo.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def foreground_signals() -> dict:
    """Give SIGINT and SIGTERM a foreground process's handlers where they are ignored (main thread
    only); returns the handlers they had. A shell that starts pytest in the background (`cmd &`, a
    script) leaves SIGINT ignored; Dagster's first run copies that to SIGTERM, every child then
    ignores SIGTERM, and a later run in a thread waits 30 s per log tail it cannot stop
    (`faults/deadline.py` shows it)."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if previous[signal.SIGINT] == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if previous[signal.SIGTERM] == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return previous


def pytest_configure(config) -> None:
    """Tests run with the SIGINT and SIGTERM of a foreground process (`foreground_signals`)."""
    foreground_signals()


def service_up(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unavailable(message: str, remedy: str) -> None:
    """Skip with `message`; under CI=true fail instead, saying what to do."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}: {remedy} (under CI=true this test must run, not skip)")
    pytest.skip(f"{message}: {remedy}", allow_module_level=True)  # also from a module's top


def require_service(host: str, port: int, name: str) -> None:
    """Skip (or, under CI=true, fail) when `name` is not listening on host:port."""
    if not service_up(host, port):
        unavailable(f"{name} is not reachable on {host}:{port}", f"start {name} first")


TOOL_PACKAGES = {"promtool": "prometheus", "prometheus": "prometheus"}  # Debian package per binary


def require_tool(name: str) -> str:
    """The path of the command-line tool `name`; skip (or, under CI=true, fail) when absent."""
    path = shutil.which(name)
    if path is None:
        package = TOOL_PACKAGES.get(name, name)
        unavailable(f"{name} not found on PATH", f"install it with apt-get install -y {package}")
    return path


def require_module(name: str, extra: str = "test"):
    """Import `name`; skip (or, under CI=true, fail) when the extra that installs it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError:
        unavailable(f"{name} is not installed", f'pip install -e ".[{extra}]" -c constraints.txt')


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

    from personalization_assets.warehouse import WarehouseConnection

    raw = duckdb.connect(":memory:")
    yield WarehouseConnection(raw, "duckdb")
    raw.close()
