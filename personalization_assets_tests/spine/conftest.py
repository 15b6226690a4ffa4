"""The prod deployment's environment, and fakesnow standing in for Snowflake (patch mode)."""

from __future__ import annotations

import pytest

from personalization_assets import settings
from personalization_assets_tests.conftest import require_module
from personalization_assets_tests.leaks import no_leaked_bus_thread  # noqa: F401 - autouse: tests close their buses

PROD_SETTINGS = {
    "SNOWFLAKE_ACCOUNT": "acct", "SNOWFLAKE_USER": "user", "SNOWFLAKE_PASSWORD": "snowflake-password-value-91c2",
    "SNOWFLAKE_DATABASE": "PERSONALIZATION", "SNOWFLAKE_WAREHOUSE": "wh", "SNOWFLAKE_ROLE": "role",
    "ORDERS_API_URL": "https://shop.example", "ORDERS_API_CLIENT_ID": "client-id",
    "ORDERS_API_CLIENT_SECRET": "orders-secret-value-7f3a",
}


@pytest.fixture
def prod_env(tmp_path, monkeypatch) -> dict[str, str]:
    """Every prod setting set (password sign-in); tests delete or replace what they probe."""
    for name in (*settings.PROD_REQUIRED, *settings.SNOWFLAKE_AUTH, "SNOWFLAKE_ROLE",
                 "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    values = {**PROD_SETTINGS, "DAGSTER_DEPLOYMENT": "prod",
              "CRM_DATABASE_URL": f"sqlite:///{tmp_path / 'crm.sqlite'}",
              "EVENT_BUS_URL": f"sqlite:///{tmp_path / 'events.db'}",
              "PERSONALIZATION_DATA_DIR": str(tmp_path)}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def snowflake_env(prod_env, monkeypatch):
    fakesnow = require_module("fakesnow")
    from dagster_snowflake.snowflake_io_manager import SnowflakeDbClient

    from personalization_assets_tests.fakesnow_support import merge_in_transactions

    original = SnowflakeDbClient.delete_table_slice

    def delete_ignoring_missing(context, table_slice, connection):
        # fakesnow words a missing table differently from Snowflake, which Dagster ignores.
        try:
            original(context, table_slice, connection)
        except Exception as exc:
            if "does not exist" not in str(exc):
                raise

    monkeypatch.setattr(SnowflakeDbClient, "delete_table_slice", staticmethod(delete_ignoring_missing))
    with merge_in_transactions(), \
            fakesnow.patch(extra_targets=["dagster_snowflake_pandas.snowflake_pandas_type_handler.write_pandas"]):
        yield prod_env
