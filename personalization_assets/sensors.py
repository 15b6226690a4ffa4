"""Sensors that watch the platform itself. Stream sensors live next to their assets."""

import json
import os

import dagster as dg

from .alerts import post_alert
from .resources.pool import free_dead_run_slots, waits


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
    freed = free_dead_run_slots(instance)
    for holder in freed:
        context.log.warning(f"freed the pool slots of {holder.describe()}")
    told = json.loads(context.cursor) if context.cursor else {}
    now = waits(instance)
    for run_id, line in now.items():
        run = instance.get_run_by_id(run_id)
        if run is not None and told.get(run_id) != line:  # once per holder, not every tick
            instance.report_engine_event(f"Waiting: {line}", run)
    summary = (f"freed {len(freed)} dead run(s): {'; '.join(h.describe() for h in freed)}. " if freed else "") + (
        f"{len(now)} run(s) waiting for a pool slot" if now else "no run waits for a pool slot")
    return dg.SensorResult(skip_reason=dg.SkipReason(summary), cursor=json.dumps(now))


defs = dg.Definitions(sensors=[run_failure_alert, pool_slot_keeper])
