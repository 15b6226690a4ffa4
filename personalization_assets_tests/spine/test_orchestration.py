"""Schedules target real jobs, and a failed run reaches the alert webhook over HTTP."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg

from personalization_assets import schedules
from personalization_assets.sensors import run_failure_alert


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_run_failure_posts_an_alert(monkeypatch):
    @dg.asset
    def exploding():
        raise RuntimeError("source went away")

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([exploding], instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)

    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert", dagster_event=failure, dagster_instance=instance,
        dagster_run=result.dagster_run).for_run_failure()
    try:
        run_failure_alert(context)
    finally:
        server.shutdown()
    assert len(_Receiver.received) == 1
    alert = _Receiver.received[0]
    assert alert["run_id"] == result.run_id
    assert alert["text"].startswith("Dagster run failed")
    assert alert["steps"] == ["exploding"]


def test_schedules_cover_segments_hourly_and_everything_daily():
    assert schedules.hourly_segments.cron_schedule == "5 * * * *"
    assert schedules.daily_profiles.cron_schedule == "0 3 * * *"
    assert schedules.daily_profiles.job_name == "everything"


def test_project_instance_config_is_valid_and_keeps_the_micro_batch_path_short(tmp_path):
    """`dagster dev` and the demo use the repository's dagster.yaml: it must load, dequeue every
    second, keep one slot for the DuckDB writers, and let one run wait for it already started."""
    import shutil
    from pathlib import Path

    from dagster._core.instance.ref import InstanceRef

    shutil.copy(Path(__file__).resolve().parents[2] / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path))) as instance:
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        pools = instance.get_concurrency_config().pool_config
        assert (pools.default_pool_limit, pools.op_granularity_run_buffer) == (1, 1)
