"""Snowflake sessions name their asset and run in QUERY_TAG and use the warehouse an asset asks
for in its tag `snowflake/warehouse`; on fakesnow the tagged connection works end to end."""

import json

import dagster as dg
import pytest

from personalization_assets.resources import resources_for
from personalization_assets.resources.snowflake_session import (
    StepSession, current_step_session, query_tag, warehouse_for,
)


def test_the_query_tag_is_json_naming_run_job_and_assets_within_snowflakes_limit():
    tag = json.loads(query_tag("r1", "everything", [dg.AssetKey(["marts", "b"]), dg.AssetKey(["core", "a"])]))
    assert tag == {"app": "personalization", "run_id": "r1", "job": "everything", "assets": ["core/a", "marts/b"]}
    many = query_tag("r1", "j", [dg.AssetKey(["core", f"asset_{i:04d}"]) for i in range(500)])
    assert len(many) <= 2000 and json.loads(many)["more_assets"] == 499


def test_assets_of_one_step_must_agree_on_their_warehouse():
    a, b = dg.AssetKey(["staging", "orders"]), dg.AssetKey(["staging", "order_lines"])
    assert warehouse_for([a, b], {a: {"snowflake/warehouse": "WH_L"}}) == "WH_L"
    assert warehouse_for([a], {}) is None
    with pytest.raises(ValueError, match="different Snowflake warehouses"):
        warehouse_for([a, b], {a: {"snowflake/warehouse": "WH_L"}, b: {"snowflake/warehouse": "WH_S"}})


def test_outside_an_asset_step_there_is_no_tag():
    assert current_step_session() == StepSession()


def test_an_asset_connects_with_its_tag_and_warehouse_on_fakesnow(snowflake_env):
    warehouse = resources_for("prod")["warehouse"]
    seen = {}

    @dg.asset(key=["marts", "heavy"], tags={"snowflake/warehouse": "PERSONALIZATION_L"})
    def heavy(warehouse: dg.ResourceParam[dg.ConfigurableResource]) -> dg.MaterializeResult:
        session = current_step_session()
        resource = warehouse.snowflake_resource(session)
        seen.update(tag=json.loads(session.query_tag), warehouse=resource.warehouse,
                    session_parameters=resource.additional_snowflake_connection_args["session_parameters"])
        with warehouse.connect() as conn:  # the tagged session connects and queries
            seen["one"] = conn.scalar("select 1")
        return dg.MaterializeResult()

    result = dg.materialize([heavy], resources={"warehouse": warehouse})
    assert result.success
    assert seen["tag"] == {"app": "personalization", "run_id": result.run_id, "job": "__ephemeral_asset_job__",
                           "assets": ["marts/heavy"]}
    assert seen["warehouse"] == "PERSONALIZATION_L"
    assert json.loads(seen["session_parameters"]["QUERY_TAG"])["assets"] == ["marts/heavy"]
    assert seen["one"] == 1
