"""Sensor-path freshness: from the collector's 200 to the event being a row in staging.events.

    python -m bench.freshness [--samples 25] [--coordinators project direct] [--background-eps 2000]

The real path, nothing simulated: a collector subprocess on a SQLite bus, and `dagster-daemon run`
on the project's definitions with the project's `dagster.yaml` in a temporary DAGSTER_HOME. The
daemon ticks `event_stream_sensor`, which launches `event_micro_batch` runs (one run process each,
default run launcher) that load raw.events and staging.events into a temporary DuckDB warehouse.

Samples are small batches (10 events) sent at random 1-2.5 s gaps, so they fall at every phase of
the sensor tick. An event is visible when the run whose offset range holds it has recorded the
staging.events materialization (its write transaction has committed by then); afterwards the
warehouse is opened to check that every sampled event really is a row of staging.events.
With --background-eps, steady traffic flows beside the samples, so each run loads a real batch.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import orjson
import requests

from bench.collector import KEY, percentile, start_collector
from personalization_assets.bus.micro_batch import OFFSET_FROM_TAG, OFFSET_TO_TAG

REPO = Path(__file__).resolve().parents[1]
SAMPLE_EVENTS = 10
STAGING_EVENTS = ("staging", "events")


def _batch(prefix: str) -> tuple[list[str], bytes]:
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    ids = [f"{prefix}-{k}" for k in range(SAMPLE_EVENTS)]
    batch = [{"type": "track", "event": "Product Viewed", "userId": f"user-{k}", "messageId": mid,
              "timestamp": now, "properties": {"sku": f"SKU-{k}", "price": 19.9, "currency": "EUR"}}
             for k, mid in enumerate(ids)]
    return ids, orjson.dumps({"batch": batch, "sentAt": now})


def _send_samples(port: int, samples: int) -> list[tuple[list[str], float]]:
    """(messageIds of the batch, unix time at which it was answered 200) per sample."""
    acked: list[tuple[list[str], float]] = []
    session = requests.Session()
    for _ in range(samples):
        ids, body = _batch(uuid.uuid4().hex[:12])
        r = session.post(f"http://127.0.0.1:{port}/v1/batch", data=body, timeout=10,
                         headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        if r.status_code != 200 or r.json().get("accepted") != len(ids):
            raise RuntimeError(f"collector refused a sample batch: {r.status_code} {r.text}")
        acked.append((ids, time.time()))
        time.sleep(random.uniform(1.0, 2.5))
    return acked


def _visible_at(instance, last_offset: int, timeout_s: float) -> list[tuple[int, int, float]]:
    """(offset_from, offset_to, unix time of the staging.events materialization) per finished run,
    waiting until the runs cover `last_offset`. A failed run is an error."""
    import dagster as dg

    deadline = time.monotonic() + timeout_s
    while True:
        runs = instance.get_runs(dg.RunsFilter(job_name="event_micro_batch"))
        failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        if failed:
            raise RuntimeError(f"micro-batch run {failed[0].run_id} failed; see {instance.root_directory}")
        done = []
        for run in runs:
            if run.status != dg.DagsterRunStatus.SUCCESS:
                continue
            mats = [e for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
                    if e.dagster_event.asset_key == dg.AssetKey(list(STAGING_EVENTS))]
            if mats:
                done.append((int(run.tags[OFFSET_FROM_TAG]), int(run.tags[OFFSET_TO_TAG]),
                             min(e.timestamp for e in mats)))
        if max((to for _, to, _ in done), default=0) >= last_offset:
            return done
        if time.monotonic() > deadline:
            raise RuntimeError(f"events up to offset {last_offset} were not staged within {timeout_s:.0f} s")
        time.sleep(0.5)


def _staged_ids(warehouse: Path, ids: list[str]) -> set[str]:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute("select message_id from staging.events where message_id in (select unnest(?))",
                            [ids]).fetchall()
    return {r[0] for r in rows}


# The project's dagster.yaml keeps Dagster's queued run coordinator and has the daemon dequeue
# every second. "direct" launches each run at once (DefaultRunCoordinator) for comparison; the
# warehouse pool still serializes the DuckDB writers, since pools are enforced per step.
DIRECT_LAUNCH = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}


def _instance_yaml(coordinator: str) -> str:
    import yaml

    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    if coordinator == "direct":
        config.pop("run_queue", None)
        config["run_coordinator"] = DIRECT_LAUNCH
    return yaml.safe_dump(config)


def _background(port: int, rate: float, stop) -> list[int]:
    """Steady traffic beside the samples: 100-event batches at `rate` events/s. Returns [acked]."""
    import threading

    acked = [0]

    def loop() -> None:
        session, k = requests.Session(), 0
        interval, due = 100 / rate, time.monotonic()
        while not stop.is_set():
            k += 1
            prefix = f"bg{k}-{uuid.uuid4().hex[:8]}"
            batch = [{"type": "track", "event": "Product Viewed", "userId": f"bg-{i % 500}", "messageId": f"{prefix}-{i}",
                      "properties": {"sku": f"SKU-{i % 50}", "price": 9.9, "currency": "EUR"}} for i in range(100)]
            r = session.post(f"http://127.0.0.1:{port}/v1/batch", data=orjson.dumps({"batch": batch}), timeout=10,
                             headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
            acked[0] += 100 if r.status_code == 200 else 0
            due += interval
            stop.wait(max(0.0, due - time.monotonic()))

    threading.Thread(target=loop, daemon=True).start()
    return acked


def run_freshness(samples: int, coordinator: str = "project", background_eps: float = 0) -> dict:
    from personalization_assets.bus import open_bus

    tmp = Path(tempfile.mkdtemp(prefix="freshness-"))
    home, data = tmp / "dagster_home", tmp / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text(_instance_yaml(coordinator))
    bus_url = f"sqlite:///{data}/events.db"
    env = {**os.environ, "DAGSTER_HOME": str(home), "PERSONALIZATION_DATA_DIR": str(data),
           "DAGSTER_DEPLOYMENT": "local", "EVENT_BUS_URL": bus_url}
    for var in ("PERSONALIZATION_DUCKDB_PATH", "CRM_DATABASE_URL", "ORDERS_API_URL"):
        env.pop(var, None)
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "PERSONALIZATION_DATA_DIR", "EVENT_BUS_URL")})
    collector, port = start_collector(bus_url, 1)
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "personalization_assets.definitions"],
        cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import dagster as dg

        time.sleep(8)  # the daemon loads the code location before its first tick
        import threading

        stop = threading.Event()
        background = _background(port, background_eps, stop) if background_eps else [0]
        try:
            acked = _send_samples(port, samples)
        finally:
            stop.set()
        records = {r.message_id: r.offset for r in open_bus(bus_url).read(0, limit=10_000_000)}
        instance = dg.DagsterInstance.get()
        runs = _visible_at(instance, max(records[m] for ids, _ in acked for m in ids), timeout_s=180)
        timeline = []  # (created, started, ended) per run: where the time goes
        for rec in instance.get_run_records(dg.RunsFilter(job_name="event_micro_batch")):
            stats = instance.get_run_stats(rec.dagster_run.run_id)
            timeline.append((rec.create_timestamp.timestamp(), stats.start_time, stats.end_time))
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)  # the daemon and the run processes it started
        daemon.wait(30)
        collector.terminate()
        collector.wait(30)
    lags = []  # one per sample batch: it is committed in one transaction, so it lands in one run
    for ids, t_ack in acked:
        offset = max(records[m] for m in ids)
        lags.append(min(t for lo, hi, t in runs if lo <= offset <= hi) - t_ack)
    sent = [m for ids, _ in acked for m in ids]
    staged = _staged_ids(data / "warehouse.duckdb", sent)
    shutil.rmtree(tmp, ignore_errors=True)
    out = {"samples": len(acked), "runs": len(runs), "p50": percentile(lags, 50), "p95": percentile(lags, 95),
           "max": max(lags), "missing": len(sent) - len(staged)}
    timeline = sorted(t for t in timeline if None not in t)  # runs still queued at the end are left out
    launch = sum(st - cr for cr, st, _ in timeline) / len(timeline)
    duration = sum(en - st for _, st, en in timeline) / len(timeline)
    verdict = "OK" if out["p95"] < 15 and not out["missing"] else "BELOW TARGET"
    how = "project dagster.yaml" if coordinator == "project" else "project dagster.yaml + DefaultRunCoordinator"
    load = f", beside {background_eps:,.0f} ev/s of other traffic ({background[0]:,} events)" if background_eps else ""
    print(f"\n[freshness] collector 200 -> row in staging.events via event_stream_sensor "
          f"(dagster-daemon, {how}, default run launcher{load})")
    print(f"  {out['samples']} sample batches of {SAMPLE_EVENTS} events, {out['runs']} micro-batch runs: "
          f"p50 {out['p50']:.1f} s  p95 {out['p95']:.1f} s  max {out['max']:.1f} s  "
          f"not in staging.events: {out['missing']}  [{verdict}]")
    print(f"  per run: sensor request -> run started {launch:.1f} s (launch, run process, code load), "
          f"run {duration:.1f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=25, help="sample batches of 10 events")
    parser.add_argument("--coordinators", nargs="+", default=["project", "direct"], choices=["project", "direct"])
    parser.add_argument("--background-eps", type=float, default=0,
                        help="steady traffic (events/s) sent beside the samples, so runs carry real batches")
    args = parser.parse_args()
    for coordinator in args.coordinators:
        run_freshness(args.samples, coordinator, args.background_eps)


if __name__ == "__main__":
    main()
