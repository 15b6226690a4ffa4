"""Resources chosen once per deployment. Keys are the same everywhere; only implementations change.

Secrets reach the resources as `dg.EnvVar`, so the UI and run config show the variable's name,
never its value. `prod` refuses to start while a setting is missing (`settings.check_prod_settings`)
instead of falling back to the demo sources and their demo credentials.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from .. import settings
from .io_manager import AtomicDuckDBIOManager
from .sources import CrmDatabase, EventBusResource, OrdersApi
from .warehouse import DuckDBWarehouse, SnowflakeWarehouse, WarehouseConnection

__all__ = ["resources_for", "snowflake_credentials", "WarehouseConnection"]

# The in-process demo orders API accepts exactly these; they guard nothing.
DEMO_CLIENT_ID, DEMO_CLIENT_SECRET = "demo-client", "demo-secret"


def resources_for(deployment: str) -> dict[str, Any]:
    """The resources of `local` (embedded DuckDB, the default) or `prod` (Snowflake)."""
    if deployment == "local":
        return _local()
    if deployment == "prod":
        settings.check_prod_settings()
        return _prod()
    raise ValueError(f"unknown deployment {deployment!r}: use 'local' or 'prod'")


def _env_or_demo(name: str, demo: str) -> str:
    return dg.EnvVar(name) if settings.is_set(name) else demo


def _sources() -> dict[str, Any]:
    # The CRM and bus URLs may carry a password (postgresql://user:pw@..., redis://:pw@...).
    return {
        "crm": CrmDatabase(url=_env_or_demo("CRM_DATABASE_URL", settings.crm_url())),
        "orders_api": OrdersApi(
            base_url=settings.orders_api_url(),
            client_id=_env_or_demo("ORDERS_API_CLIENT_ID", DEMO_CLIENT_ID),
            client_secret=_env_or_demo("ORDERS_API_CLIENT_SECRET", DEMO_CLIENT_SECRET),
            catalogue_dir=str(settings.data_dir() / "shop"),
        ),
        "event_bus": EventBusResource(url=_env_or_demo("EVENT_BUS_URL", settings.event_bus_url())),
    }


def _local() -> dict[str, Any]:
    database = str(settings.warehouse_path())
    return {
        "io_manager": AtomicDuckDBIOManager(database=database),
        "warehouse": DuckDBWarehouse(database=database),
        **_sources(),
    }


def snowflake_credentials() -> dict[str, Any]:
    """Connection settings shared by the IO manager and the `warehouse` resource: the account,
    and the one sign-in method that is set (key-pair, OAuth token file or password)."""
    credentials: dict[str, Any] = {
        "account": dg.EnvVar("SNOWFLAKE_ACCOUNT"),
        "user": dg.EnvVar("SNOWFLAKE_USER"),
        "database": dg.EnvVar("SNOWFLAKE_DATABASE"),
        "warehouse": dg.EnvVar("SNOWFLAKE_WAREHOUSE"),
    }
    if settings.is_set("SNOWFLAKE_ROLE"):
        credentials["role"] = dg.EnvVar("SNOWFLAKE_ROLE")
    auth = settings.snowflake_auth()
    if auth == "SNOWFLAKE_PRIVATE_KEY_PATH":
        credentials["private_key_path"] = dg.EnvVar(auth)
    elif auth == "SNOWFLAKE_PRIVATE_KEY":
        credentials["private_key"] = dg.EnvVar(auth)  # the PEM itself, or base64 of it
    elif auth == "SNOWFLAKE_OAUTH_TOKEN_FILE":
        # A path, not a secret: the connector reads the token from the file at each sign-in.
        credentials["authenticator"] = "oauth"
        credentials["additional_snowflake_connection_args"] = {"token_file_path": settings.env(auth)}
    else:
        credentials["password"] = dg.EnvVar(auth)
    if auth.startswith("SNOWFLAKE_PRIVATE_KEY") and settings.is_set("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
        credentials["private_key_password"] = dg.EnvVar("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")
    return credentials


def _prod() -> dict[str, Any]:
    try:
        from .snowflake_io import AtomicSnowflakeIOManager  # lazy: ~4 s import (dagster_snowflake_pandas)
    except ImportError as exc:
        raise ImportError("DAGSTER_DEPLOYMENT=prod needs the Snowflake integration: "
                          'pip install "personalization-assets[snowflake]"') from exc

    credentials = snowflake_credentials()
    return {
        "io_manager": AtomicSnowflakeIOManager(**credentials),
        "warehouse": SnowflakeWarehouse(**credentials),
        **_sources(),
    }
