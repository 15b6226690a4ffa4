"""The whole Definitions loads, every job resolves, and every asset is described for the UI."""

import dagster as dg
import pytest

from personalization_assets.definitions import defs
from personalization_assets.resources import resources_for


@pytest.fixture(scope="module")
def definitions(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path_factory.mktemp("defs")))
        yield defs()


def test_every_job_resolves(definitions):
    repo = definitions.get_repository_def()
    assert repo.get_all_jobs()
    for job in repo.get_all_jobs():
        assert job.name


def test_every_asset_has_a_description_group_and_two_level_key(definitions):
    graph = definitions.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, f"{key.to_user_string()} has no docstring"
        assert len(key.path) == 2, f"{key.to_user_string()} is not [layer, table]"
        assert node.group_name != "default", f"{key.to_user_string()} has no group"


def test_prod_uses_the_same_resource_keys_as_local(prod_env):
    assert set(resources_for("prod")) == set(resources_for("local"))


def test_unknown_deployment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "staging")
    with pytest.raises(ValueError, match="DAGSTER_DEPLOYMENT must be 'local' or 'prod'"):
        defs()


def test_warehouse_writers_share_one_pool(definitions):
    graph = definitions.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assets_def = graph.get(key).assets_def
        if not assets_def.is_executable:
            continue  # declared elsewhere (e.g. the collector's quarantine), nothing runs here
        assert assets_def.op.pool == "warehouse_writer", key.to_user_string()
