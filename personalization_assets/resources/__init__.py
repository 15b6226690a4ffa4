"""Resources chosen once per deployment. Keys are the same everywhere; only implementations change."""

from __future__ import annotations

from typing import Any

import dagster as dg

from .. import settings
from .sources import CrmDatabase, EventBusResource, OrdersApi
from .warehouse import DuckDBWarehouse, SnowflakeWarehouse, WarehouseConnection

__all__ = ["resources_for", "WarehouseConnection"]


def resources_for(deployment: str) -> dict[str, Any]:
    """The resources of `local` (embedded DuckDB, the default) or `prod` (Snowflake)."""
    if deployment == "local":
        return _local()
    if deployment == "prod":
        return _prod()
    raise ValueError(f"unknown deployment {deployment!r}: use 'local' or 'prod'")


def _sources() -> dict[str, Any]:
    return {
        "crm": CrmDatabase(url=settings.crm_url()),
        "orders_api": OrdersApi(
            base_url=settings.orders_api_url(),
            client_id=dg.EnvVar("ORDERS_API_CLIENT_ID").get_value("demo-client") or "demo-client",
            client_secret=dg.EnvVar("ORDERS_API_CLIENT_SECRET").get_value("demo-secret")
            or "demo-secret",
            catalogue_dir=str(settings.data_dir() / "shop"),
        ),
        "event_bus": EventBusResource(url=settings.event_bus_url()),
    }


def _local() -> dict[str, Any]:
    from dagster_duckdb_pandas import DuckDBPandasIOManager

    database = str(settings.warehouse_path())
    return {
        "io_manager": DuckDBPandasIOManager(database=database),
        "warehouse": DuckDBWarehouse(database=database),
        **_sources(),
    }


def _prod() -> dict[str, Any]:
    from dagster_snowflake_pandas import SnowflakePandasIOManager  # lazy: ~4 s import

    credentials = {
        "account": dg.EnvVar("SNOWFLAKE_ACCOUNT"),
        "user": dg.EnvVar("SNOWFLAKE_USER"),
        "password": dg.EnvVar("SNOWFLAKE_PASSWORD"),
        "database": dg.EnvVar("SNOWFLAKE_DATABASE"),
        "warehouse": dg.EnvVar("SNOWFLAKE_WAREHOUSE"),
        "role": dg.EnvVar("SNOWFLAKE_ROLE"),
    }
    return {
        "io_manager": SnowflakePandasIOManager(**credentials),
        "warehouse": SnowflakeWarehouse(**credentials),
        **_sources(),
    }
