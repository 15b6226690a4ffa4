"""Assets whose cost follows the whole history (the trigger backtest, the quarantine replay) run on
demand: the default `everything` job leaves them out, and each says why in its description."""

import dagster as dg
import pytest

from personalization_assets.definitions import defs

ON_DEMAND_KEYS = {dg.AssetKey(["activation", "trigger_backtest"]), dg.AssetKey(["quarantine", "staging_replayed"])}


@pytest.fixture(scope="module")
def definitions(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path_factory.mktemp("defs")))
        yield defs()


def test_everything_leaves_out_the_whole_history_replays_and_keeps_the_rest(definitions):
    graph = definitions.resolve_asset_graph()
    executable = {k for k in graph.get_all_asset_keys() if graph.get(k).is_executable}
    in_job = definitions.resolve_job_def("everything").asset_layer.executable_asset_keys
    on_demand = {k for k in executable if graph.get(k).tags.get("on_demand") == "true"}
    assert ON_DEMAND_KEYS <= on_demand  # other helpers' history-sized assets may join them
    assert in_job == executable - on_demand


def test_on_demand_assets_say_why_they_are_manual(definitions):
    graph = definitions.resolve_asset_graph()
    for key in ON_DEMAND_KEYS:
        node = graph.get(key)
        assert node.automation_condition is None, key
        assert "manual:" in (node.description or ""), key
        assert "default jobs leave it out" in node.description, key
