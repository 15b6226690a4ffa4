"""The prod deployment (Snowflake) for real on fakesnow: same assets, only environment changed."""

import contextlib
import os

from datetime import datetime, timezone

import dagster as dg
import pandas as pd
import pytest

fakesnow = pytest.importorskip("fakesnow")

from personalization_assets.assets import core, raw, staging  # noqa: E402
from personalization_assets.resources import resources_for  # noqa: E402
from personalization_assets.sources.crm import write_customers  # noqa: E402

ROWS = [
    {"customer_id": i, "first_name": "Ann", "last_name": "Lee", "email": email, "phone": None,
     "street": None, "city": None, "postcode": None, "country": "Germany", "birth_date": None,
     "timezone": "Europe/Berlin", "locale": "de-DE", "email_opt_in": True, "consent_processing": True,
     "created_at": datetime(2026, 1, i), "updated_at": datetime(2026, 2, i)}
    for i, email in [(1, "ann@example.org"), (2, "ANN@example.org "), (3, "bob@example.org"), (4, "broken")]
]


@pytest.fixture
def snowflake_env(tmp_path, monkeypatch):
    from dagster_snowflake.snowflake_io_manager import SnowflakeDbClient

    for var, value in {"SNOWFLAKE_ACCOUNT": "acct", "SNOWFLAKE_USER": "user",
                       "SNOWFLAKE_PASSWORD": "pw", "SNOWFLAKE_DATABASE": "PERSONALIZATION",
                       "SNOWFLAKE_WAREHOUSE": "wh", "SNOWFLAKE_ROLE": "role",
                       "DAGSTER_DEPLOYMENT": "prod",
                       "CRM_DATABASE_URL": f"sqlite:///{tmp_path / 'crm.sqlite'}",
                       "PERSONALIZATION_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(var, value)
    original = SnowflakeDbClient.delete_table_slice

    def delete_ignoring_missing(context, table_slice, connection):
        # fakesnow words a missing table differently from Snowflake, which Dagster ignores.
        try:
            original(context, table_slice, connection)
        except Exception as exc:
            if "does not exist" not in str(exc):
                raise

    monkeypatch.setattr(SnowflakeDbClient, "delete_table_slice", staticmethod(delete_ignoring_missing))
    with fakesnow.patch(extra_targets=["dagster_snowflake_pandas.snowflake_pandas_type_handler.write_pandas"]):
        yield


@contextlib.contextmanager
def _warehouse(resources):
    """The configured Snowflake warehouse resource, with its EnvVars resolved as Dagster does."""
    with dg.build_resources({"warehouse": resources["warehouse"]}) as built:
        with built.warehouse.connect() as conn:
            yield conn


def test_prod_path_materializes_and_reads_back(snowflake_env):
    write_customers(os.environ["CRM_DATABASE_URL"], ROWS)
    resources = resources_for("prod")
    selection = [raw.crm_customers, staging.customers, core.customers]
    result = dg.materialize(selection, resources=resources, selection=None)
    assert result.success
    golden = result.output_for_node("customers", "golden")
    assert sorted(golden["email"]) == ["ann@example.org", "bob@example.org"]

    # Read back downstream: a later run loads core.customers from Snowflake through the IO manager.
    @dg.asset(key=["marts", "probe"], ins={"customers": dg.AssetIn(key=["core", "customers"])})
    def probe(customers):
        return pd.DataFrame({"emails": [len(customers)]})

    reread = dg.materialize([probe, *selection], resources=resources, selection=[probe])
    assert reread.success
    assert reread.output_for_node("marts__probe")["emails"].tolist() == [2]

    with _warehouse(resources) as conn:
        quarantined = conn.query("select record_id, rule from quarantine.crm_customers")
        staged = conn.query("select record_id, email from staging.customers order by record_id")
    assert list(quarantined["record_id"]) == ["crm:4"]
    assert list(staged["record_id"]) == ["crm:1", "crm:2", "crm:3"]

    # A second run replaces rows rather than doubling them.
    assert dg.materialize(selection, resources=resources).success
    with _warehouse(resources) as conn:
        assert conn.scalar("select count(*) from raw.crm_customers") == 4
        assert conn.scalar("select count(*) from core.customers") == 2
