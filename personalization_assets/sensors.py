"""Sensors that watch the platform itself. Stream sensors live next to their assets."""

import os

import dagster as dg

from .alerts import post_alert


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


defs = dg.Definitions(sensors=[run_failure_alert])
