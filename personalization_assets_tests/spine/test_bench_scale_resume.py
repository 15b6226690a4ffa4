"""`bench.scale --resume` builds what a stopped run left: its built assets leave the selection with
their checks, except checks whose latest evaluation did not pass."""

import dagster as dg

from bench.scale_run import left_unbuilt
from personalization_assets.definitions import defs
from personalization_assets.schedules import everything_job

EVENTS, CUSTOMERS = dg.AssetKey(["staging", "events"]), dg.AssetKey(["staging", "customers"])


def test_resume_leaves_out_built_assets_and_keeps_their_checks_that_did_not_pass():
    selection = everything_job.selection - dg.AssetSelection.key_prefixes("raw")
    graph = defs().resolve_asset_graph()
    checks = {c.asset_key: [] for c in selection.resolve_checks(graph)}
    for c in selection.resolve_checks(graph):
        checks[c.asset_key].append(c)
    failed, passed = checks[EVENTS][0], checks[CUSTOMERS][0]
    with dg.DagsterInstance.ephemeral() as instance:
        for key in (EVENTS, CUSTOMERS):
            instance.report_runless_asset_event(dg.AssetMaterialization(key))
        for check, ok in ((failed, False), (passed, True)):
            instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                asset_key=check.asset_key, check_name=check.name, passed=ok))
        left = left_unbuilt(selection, instance)
    assets, left_checks = left.resolve(graph), left.resolve_checks(graph)
    assert EVENTS not in assets and CUSTOMERS not in assets
    assert assets == selection.resolve(graph) - {EVENTS, CUSTOMERS}  # the rest is all still there
    assert failed in left_checks and passed not in left_checks
    # a check of a built asset that never reported (its step failed) runs again too
    assert set(checks[EVENTS]) | set(checks[CUSTOMERS]) - {passed} <= left_checks
