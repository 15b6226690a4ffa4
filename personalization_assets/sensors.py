"""Sensors that watch the platform itself and the automation sensor. Stream sensors that launch
runs live next to their assets."""

import json
import os
import time

import dagster as dg

from . import activity, settings
from .alerts import post_alert
from .resources.pool import free_dead_run_slots, slot_holders, waits


@dg.run_failure_sensor(name="run_failure_alert", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Posts every failed run to the webhook in ALERT_WEBHOOK_URL.")
def run_failure_alert(context: dg.RunFailureSensorContext):
    url = os.environ.get("ALERT_WEBHOOK_URL", "")
    run = context.dagster_run
    if not url:
        return dg.SkipReason(f"run {run.run_id} of {run.job_name} failed; ALERT_WEBHOOK_URL is not set")
    status = post_alert(url, f"Dagster run failed: {run.job_name}", {
        "run_id": run.run_id,
        "job": run.job_name,
        "error": context.failure_event.message,
        "steps": [e.step_key for e in context.get_step_failure_events()],
    })
    context.log.info(f"alert for run {run.run_id} delivered ({status})")


@dg.sensor(name="pool_slot_keeper", minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Frees the pool slots of runs whose process is gone (a killed run never releases "
                       "its slot in warehouse_writer) and tells each waiting run which run holds the slot.")
def pool_slot_keeper(context: dg.SensorEvaluationContext):
    instance = context.instance
    holders = slot_holders(instance, by_process=settings.deployment() == "local")  # pids name this host only
    freed = free_dead_run_slots(instance, holders)
    for holder in freed:
        context.log.warning(f"freed the pool slots of {holder.describe()}")
    told = json.loads(context.cursor) if context.cursor else {}
    now = waits(instance, holders={run_id: h for run_id, h in holders.items() if h.alive})
    for run_id, line in now.items():
        run = instance.get_run_by_id(run_id)
        if run is not None and told.get(run_id) != line:  # once per holder, not every tick
            instance.report_engine_event(f"Waiting: {line}", run)
    summary = (f"freed {len(freed)} dead run(s): {'; '.join(h.describe() for h in freed)}. " if freed else "") + (
        f"{len(now)} run(s) waiting for a pool slot" if now else "no run waits for a pool slot")
    return dg.SensorResult(skip_reason=dg.SkipReason(summary), cursor=json.dumps(now))


FIRES_KEY = dg.AssetKey(["activation", "trigger_fires"])
EMAILS_KEY = dg.AssetKey(["activation", "triggered_emails"])
SETTLE_S = 2.0  # a row is stamped just before its transaction commits: leave the newest seconds to the next tick


def _numbers(figures: dict) -> dict:
    """Observation metadata: numbers as numbers (the UI plots them over time), dicts as JSON, no Nones."""
    out = {}
    for name, value in figures.items():
        if isinstance(value, dict):
            out[name] = dg.MetadataValue.json(value)
        elif isinstance(value, int):
            out[name] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            out[name] = dg.MetadataValue.float(round(value, 3))
    return out


def activity_observations(since: float, until: float, ledger, outbox) -> list[dg.AssetObservation]:
    """One observation per asset that saw work in [since, until): the engine's fires on
    activation/trigger_fires, the sender's outbox on activation/triggered_emails."""
    found = []
    window = {"window_start": dg.MetadataValue.timestamp(since), "window_end": dg.MetadataValue.timestamp(until),
              "window_s": dg.MetadataValue.float(round(until - since, 1))}
    fires = activity.fires_between(ledger, since, until)
    if fires:
        found.append(dg.AssetObservation(FIRES_KEY, metadata={
            **_numbers(fires), **window, "dagster/row_count": dg.MetadataValue.int(fires["decisions"]),
            "ledger": str(ledger)}))
    sends = activity.sends_between(outbox, since, until)
    if sends:
        found.append(dg.AssetObservation(EMAILS_KEY, metadata={
            **_numbers(sends), **window, "dagster/row_count": dg.MetadataValue.int(sends["changed"]),
            "outbox": str(outbox)}))
    return found


@dg.sensor(name="activation_stream_sensor", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           asset_selection=[FIRES_KEY, EMAILS_KEY],
           description="Records what the trigger engine and the sender did since the last tick as observations of "
                       "activation/trigger_fires and activation/triggered_emails (counts, latencies): no run is "
                       "launched, the figures come from the engine's ledger and the sender's outbox.")
def activation_stream_sensor(context: dg.SensorEvaluationContext):
    until = time.time() - SETTLE_S
    since = float(context.cursor) if context.cursor else 0.0
    if until <= since:
        return dg.SkipReason("the last window has not closed yet")
    ledger, outbox = activity.ledger_path(), activity.outbox_path()
    observations = activity_observations(since, until, ledger, outbox)
    if not observations:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            f"no fire in {ledger} and no send in {outbox} since the last tick"), cursor=repr(until))
    return dg.SensorResult(asset_events=observations, cursor=repr(until))


def automation_sensor(running: bool) -> dg.AutomationConditionSensorDefinition:
    """Evaluates every asset's automation condition (eager, cron) every 15 s: a micro-batch reaches
    the marts within a tick or two. Running by default locally; production states it (`settings`)."""
    return dg.AutomationConditionSensorDefinition(
        "default_automation_condition_sensor", target=dg.AssetSelection.all(), minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description="Requests the assets whose automation condition is true: eager ones after their parents "
                    "update, cron ones on their tick (see each asset's description).")


def definitions(automation_running: bool) -> dg.Definitions:
    """The platform sensors; the automation sensor starts running or stopped as the deployment says."""
    return dg.Definitions(sensors=[run_failure_alert, pool_slot_keeper, activation_stream_sensor,
                                   automation_sensor(automation_running)])


defs = definitions(automation_running=True)
