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


# -- every asset has an automation story; a micro-batch reaches the marts on its own ---------------
import re  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

from personalization_assets.partitions import day_of  # noqa: E402

# "manual: <why nothing automates it>" ("on demand: <why>" for the assets tagged on_demand)
MANUAL_NOTE = re.compile(r"^\s*(manual|on demand): \S.{30,}", re.MULTILINE)


def test_every_asset_is_eager_cron_or_manual_with_a_reason():
    specs = defs().resolve_all_asset_specs()
    assert len(specs) >= 35
    silent = [s.key.to_user_string() for s in specs
              if s.automation_condition is None and not MANUAL_NOTE.search(s.description or "")]
    assert silent == [], f"no automation condition and no 'manual: <reason>' line in the description: {silent}"
    # ...and the description says so, as the UI shows it: the condition's own label, last
    unsaid = [s.key.to_user_string() for s in specs if s.automation_condition is not None and not
              (s.description or "").splitlines()[-1].startswith(f"automation: {s.automation_condition.get_label()}")]
    assert unsaid == [], f"automated, but the description does not end with its automation: {unsaid}"
    stories = {(s.description or "").splitlines()[-1].split(" (")[0] for s in specs if s.automation_condition}
    assert {"automation: eager, after blocking checks", "automation: every 5 minutes",
            "automation: eager, and 5 * * * *, after blocking checks"} <= stories, stories


def test_the_manual_note_is_what_the_check_looks_for():
    assert MANUAL_NOTE.search("Rows.\n\n    manual: loaded by event_stream_sensor, one run per offset range.")
    assert not MANUAL_NOTE.search("Rows loaded manually.")
    assert MANUAL_NOTE.search("    on demand: it replays a window of history, so it runs when someone asks.")
    assert not MANUAL_NOTE.search("manual: because")  # a reason, not a word


EVENTS = dg.AssetKey(["staging", "events"])


def _materialize_everything(instance, graph, day: str) -> None:
    """Every asset materialized (arrival-day assets: only `day`, the days before stay empty) and
    every blocking check passed, but staging.events' (the tests report it: one runless result per
    check and partition)."""
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        partition = day if node.partitions_def is not None else None
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))
        for check in node.check_keys - ({dg.AssetCheckKey(EVENTS, "pandera_StagingEvents")}):
            instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                asset_key=key, check_name=check.name, passed=True, severity=dg.AssetCheckSeverity.ERROR,
                partition=partition))


def _requested_keys(result) -> set[str]:
    return {r.key.to_user_string() for r in result.results
            if isinstance(r.key, dg.AssetKey) and r.true_subset.size}


def test_a_micro_batch_reaches_identity_map_profiles_segments_and_payloads():
    """Staging partitions exist for today only (as after `dagster dev` on a new deployment: 1,000+
    empty days behind it); a micro-batch updating today's staging.events is enough."""
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    today = day_of(datetime.now(timezone.utc))
    assert graph.get(dg.AssetKey(["staging", "events"])).partitions_def.get_first_partition_key() < \
        day_of(datetime.now(timezone.utc) - timedelta(days=30))  # history is there, and empty
    with dg.instance_for_test() as instance:
        _materialize_everything(instance, graph, today)
        settled = dg.evaluate_automation_conditions(defs=definitions, instance=instance)
        settled = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=settled.cursor)
        assert not {"core/identity_map", "marts/segment_membership"} & _requested_keys(settled)
        instance.report_runless_asset_event(dg.AssetMaterialization(["raw", "events"]))
        instance.report_runless_asset_event(dg.AssetMaterialization(["staging", "events"], partition=today))
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(["staging", "events"]), check_name="pandera_StagingEvents", passed=True,
            severity=dg.AssetCheckSeverity.ERROR, partition=today))
        result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=settled.cursor)
    requested = _requested_keys(result)
    assert {"core/identity_map", "marts/customer_profiles", "marts/segment_membership",
            "marts/personalization_payloads", "activation/trigger_guard"} <= requested, requested
    assert "raw/crm_customers" not in requested  # sources are pulled by schedules, not by events


def test_a_failed_check_on_todays_events_holds_the_identity_map_back():
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    today = day_of(datetime.now(timezone.utc))
    with dg.instance_for_test() as instance:
        _materialize_everything(instance, graph, today)
        settled = dg.evaluate_automation_conditions(defs=definitions, instance=instance)
        instance.report_runless_asset_event(dg.AssetMaterialization(["staging", "events"], partition=today))
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(["staging", "events"]), check_name="pandera_StagingEvents", passed=False,
            severity=dg.AssetCheckSeverity.ERROR, partition=today))
        result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=settled.cursor)
    assert "core/identity_map" not in _requested_keys(result)


def test_the_local_deployment_starts_the_automation_sensor_schedules_and_stream_sensors(monkeypatch):
    monkeypatch.delenv("PERSONALIZATION_AUTOMATION", raising=False)
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "local")
    definitions = defs()
    sensors = {s.name: s.default_status for s in definitions.get_repository_def().sensor_defs}
    assert set(sensors) >= {"default_automation_condition_sensor", "event_stream_sensor", "email_events_sensor",
                            "activation_stream_sensor", "run_failure_alert", "pool_slot_keeper"}
    assert set(sensors.values()) == {dg.DefaultSensorStatus.RUNNING}, sensors
    schedules = {s.name: s.default_status for s in definitions.schedules}
    assert schedules == {"hourly_segments": dg.DefaultScheduleStatus.RUNNING,
                         "daily_profiles": dg.DefaultScheduleStatus.RUNNING}
    automation = definitions.resolve_sensor_def("default_automation_condition_sensor")
    graph = definitions.resolve_asset_graph()
    assert automation.asset_selection.resolve(graph) == graph.get_all_asset_keys()  # every condition is evaluated


def test_production_states_whether_automation_runs(monkeypatch):
    from personalization_assets import schedules, sensors

    for running, status in ((True, dg.DefaultScheduleStatus.RUNNING), (False, dg.DefaultScheduleStatus.STOPPED)):
        assert {s.default_status for s in schedules.schedules(running)} == {status}
        assert sensors.automation_sensor(running).default_status.value == status.value


def test_the_production_compose_file_states_whether_automation_runs(monkeypatch):
    """Production sets it explicitly: the code server, where the definitions load, gets the
    setting from the compose file, where its value is stated rather than left to the code's
    fallback (stopped in prod); the deployment guide documents it."""
    from pathlib import Path

    import yaml

    from personalization_assets.settings import automation_running

    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "deploy" / "docker-compose.yml").read_text())
    stated = compose["services"]["personalization_code"]["environment"]["PERSONALIZATION_AUTOMATION"]
    assert stated == "${PERSONALIZATION_AUTOMATION:-running}"
    assert "| `PERSONALIZATION_AUTOMATION` |" in (root / "docs" / "deployment.md").read_text()
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "prod")
    monkeypatch.setenv("PERSONALIZATION_AUTOMATION", "running")
    assert automation_running()
    monkeypatch.delenv("PERSONALIZATION_AUTOMATION")
    assert not automation_running()  # unset in prod: stopped
