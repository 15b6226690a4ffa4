"""Prod refuses to start on missing settings, and secrets never show up in the config Dagster shows."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from personalization_assets import settings
from personalization_assets.definitions import defs
from personalization_assets.resources import resources_for
from personalization_assets.settings import MissingSettings

from .conftest import PROD_SETTINGS


def refusal(monkeypatch, *unset: str) -> str:
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(MissingSettings) as refused:
        defs()  # what `dagster dev` / the code server loads
    message = str(refused.value)
    assert "\n" not in message, "the refusal must be one line"
    return message


def test_prod_without_orders_api_url_refuses_instead_of_using_the_demo(prod_env, monkeypatch):
    message = refusal(monkeypatch, "ORDERS_API_URL")
    assert "ORDERS_API_URL" in message
    named = [n for n in (*settings.PROD_REQUIRED, *settings.SNOWFLAKE_AUTH) if n in message.replace("ORDERS_API_URL", "")]
    assert named == [], f"only the missing setting is named, not {named}"


def test_prod_names_each_missing_setting_in_one_line(prod_env, monkeypatch):
    message = refusal(monkeypatch, *settings.PROD_REQUIRED, *settings.SNOWFLAKE_AUTH)
    for name in (*settings.PROD_REQUIRED, *settings.SNOWFLAKE_AUTH):
        assert name in message
    assert message.startswith("DAGSTER_DEPLOYMENT=prod refuses to start")


def test_an_empty_setting_counts_as_missing(prod_env, monkeypatch):
    monkeypatch.setenv("ORDERS_API_CLIENT_SECRET", "  ")
    assert "ORDERS_API_CLIENT_SECRET" in refusal(monkeypatch)


def test_sign_in_must_be_one_method_and_its_file_must_exist(prod_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PATH", str(tmp_path / "absent.p8"))
    message = refusal(monkeypatch)
    assert "only one of SNOWFLAKE_PRIVATE_KEY_PATH and SNOWFLAKE_PASSWORD" in message
    assert f"SNOWFLAKE_PRIVATE_KEY_PATH (no file at {tmp_path / 'absent.p8'})" in message


def test_local_needs_none_of_them(monkeypatch, tmp_path):
    for name in (*settings.PROD_REQUIRED, *settings.SNOWFLAKE_AUTH):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "local")
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path))
    assert set(resources_for("local")) >= {"io_manager", "warehouse", "crm", "orders_api", "event_bus"}


def shown_config(resource) -> str:
    """The configured values the UI lists for a resource (Dagster's resource snapshot reads
    exactly this default of the resource's config schema)."""
    return resource.get_resource_definition().config_schema.default_value_as_json_str


@pytest.mark.parametrize("deployment", ["local", "prod"])
def test_secrets_are_env_vars_not_values_in_the_ui(deployment, prod_env, monkeypatch):
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", deployment)
    monkeypatch.setenv("CRM_DATABASE_URL", "postgresql+psycopg2://crm:crm-password-5e1d@db.internal/crm")
    monkeypatch.setenv("EVENT_BUS_URL", "redis://:bus-password-0b7c@redis.internal:6379/0")
    resources = resources_for(deployment)
    secrets = [PROD_SETTINGS["ORDERS_API_CLIENT_SECRET"], PROD_SETTINGS["SNOWFLAKE_PASSWORD"],
               "crm-password-5e1d", "bus-password-0b7c"]
    for key, resource in resources.items():
        text = shown_config(resource)
        assert not [s for s in secrets if s in text], f"resource {key} shows a secret: {text}"
    orders = json.loads(shown_config(resources["orders_api"]))
    assert orders["client_secret"] == {"env": "ORDERS_API_CLIENT_SECRET"}
    with dg.build_resources({"orders_api": resources["orders_api"]}) as built:  # resolved at run time
        assert built.orders_api.client_secret == PROD_SETTINGS["ORDERS_API_CLIENT_SECRET"]


def test_demo_credentials_only_when_nothing_is_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("ORDERS_API_CLIENT_SECRET", raising=False)
    monkeypatch.delenv("ORDERS_API_URL", raising=False)
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path))
    orders = json.loads(shown_config(resources_for("local")["orders_api"]))
    assert orders["client_secret"] == "demo-secret"  # the in-process demo API's, guarding nothing


def test_the_ui_shows_the_secrets_name_not_its_value(prod_env, tmp_path):
    """Ask the Dagster GraphQL API (what the UI reads) for the resources of a code server that
    loaded the prod definitions."""
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql, infer_resource_selector

    from personalization_assets_tests.conftest import REPO_ROOT

    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(json.dumps({"load_from": [{"python_module": {
        "module_name": "personalization_assets.definitions", "working_directory": str(REPO_ROOT)}}]}))
    query = """query ($selector: ResourceSelector!) { topLevelResourceDetailsOrError(resourceSelector: $selector) {
        __typename ... on ResourceDetails { configuredValues { key value type } } } }"""
    with dg.instance_for_test() as instance, \
            define_out_of_process_context(str(workspace), None, instance) as context:
        shown = {}
        for name in ("orders_api", "warehouse", "io_manager"):
            result = execute_dagster_graphql(context, query, {"selector": infer_resource_selector(context, name)})
            details = result.data["topLevelResourceDetailsOrError"]
            assert details["__typename"] == "ResourceDetails", details
            shown[name] = {v["key"]: (v["type"], v["value"]) for v in details["configuredValues"]}
    assert shown["orders_api"]["client_secret"] == ("ENV_VAR", "ORDERS_API_CLIENT_SECRET")
    assert shown["warehouse"]["password"] == ("ENV_VAR", "SNOWFLAKE_PASSWORD")
    everything = json.dumps(shown)
    assert PROD_SETTINGS["ORDERS_API_CLIENT_SECRET"] not in everything
    assert PROD_SETTINGS["SNOWFLAKE_PASSWORD"] not in everything
