"""Where the platform keeps its local files, and which deployment is active.

Everything is read when called, never at import, so tests and the CLI can point a process at a
temporary directory by setting the environment first.
"""

import os
from pathlib import Path

DEFAULT_DATA_DIR = ".data"


def deployment() -> str:
    """`local` (embedded DuckDB, the default) or `prod` (Snowflake)."""
    name = os.environ.get("DAGSTER_DEPLOYMENT", "local").strip().lower() or "local"
    if name not in {"local", "prod"}:
        raise ValueError(f"DAGSTER_DEPLOYMENT must be 'local' or 'prod', not {name!r}")
    return name


def data_dir() -> Path:
    """Root of the embedded warehouse, event bus and demo sources (`PERSONALIZATION_DATA_DIR`)."""
    return Path(os.environ.get("PERSONALIZATION_DATA_DIR", DEFAULT_DATA_DIR)).resolve()


def warehouse_path() -> Path:
    return Path(os.environ.get("PERSONALIZATION_DUCKDB_PATH", data_dir() / "warehouse.duckdb"))


def crm_url() -> str:
    """SQLAlchemy URL of the CRM database; the demo seeds a SQLite file."""
    return os.environ.get("CRM_DATABASE_URL", f"sqlite:///{data_dir() / 'crm.sqlite'}")


def event_bus_url() -> str:
    return os.environ.get("EVENT_BUS_URL", f"sqlite:///{data_dir() / 'events.db'}")


def orders_api_url() -> str:
    """Base URL of the e-commerce API. Empty means: serve the demo catalogue in-process."""
    return os.environ.get("ORDERS_API_URL", "")
