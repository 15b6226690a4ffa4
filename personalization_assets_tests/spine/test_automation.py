"""Downstream assets follow their parents automatically, but never past a failed blocking check."""

import dagster as dg

from personalization_assets.definitions import defs

STAGED = dg.AssetKey(["staging", "customers"])
GOLDEN = dg.AssetKey(["core", "customers"])
CHECK = "pandera_StagingCustomers"


def _requested(definitions, instance, cursor=None):
    result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=cursor,
                                               asset_selection=dg.AssetSelection.assets(GOLDEN))
    return result.get_requested_partitions(GOLDEN) != set(), result.cursor


def _staged(instance, passed: bool) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(STAGED))
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=STAGED, check_name=CHECK, passed=passed, severity=dg.AssetCheckSeverity.ERROR))


def test_golden_records_wait_for_a_passing_blocking_check():
    definitions = defs()
    assert definitions.resolve_asset_graph().get(STAGED).check_keys  # the check exists and is blocking
    with dg.instance_for_test() as instance:
        requested, cursor = _requested(definitions, instance)
        assert not requested  # nothing staged yet
        _staged(instance, passed=False)
        requested, cursor = _requested(definitions, instance, cursor)
        assert not requested  # staged, but its blocking check failed
        _staged(instance, passed=True)
        requested, cursor = _requested(definitions, instance, cursor)
        assert requested
