"""Automation-path freshness: from the collector's 200 to an updated row in marts.segment_membership.

    python -m bench.automation [--samples 5] [--scale 0.3] [--json]

The real path, nothing triggered by hand: `personalization demo` builds the warehouse first (in a
temporary directory), then a collector subprocess and `dagster dev` (webserver and daemon, the
project's dagster.yaml) run on it. Each sample is one `Product Added` event for a known, sendable
customer who is not a cart abandoner yet, timed two hours ago, so the customer belongs in the
`cart_abandoners` segment once the event has gone through: `event_stream_sensor` stages it
(micro-batch run), then the automation sensor requests core.identity_map, the profiles and the
segments (eager), in one run.

A sample is done when marts.segment_membership is materialized by a run created after the
micro-batch that staged its event committed (that run read the event). Samples are sent one after
another, at a random 0-15 s after the previous one is done, so they fall at every phase of the
sensor ticks. At the end the warehouse is opened to check that each sample's customer really is a
member of cart_abandoners. Target: p95 < 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import requests

from bench.collector import KEY, free_port, percentile, start_collector
from personalization_assets.bus.micro_batch import OFFSET_FROM_TAG, OFFSET_TO_TAG

REPO = Path(__file__).resolve().parents[1]
MEMBERSHIP = ("marts", "segment_membership")
STAGING_EVENTS = ("staging", "events")
SEGMENT = "cart_abandoners"
TARGET_P95_S = 120.0


@dataclass
class Sample:
    user_id: str
    customer_key: str
    message_id: str = ""
    acked: float = 0.0
    staged: float | None = None
    in_segment: float | None = None


def _say(quiet: bool, line: str) -> None:
    if not quiet:
        print(line, file=sys.stderr, flush=True)


def build_demo(data: Path, home: Path, scale: float) -> None:
    """The warehouse and instance the live system starts from (`personalization demo`)."""
    done = subprocess.run([sys.executable, "-m", "personalization_assets.cli", "demo", "--scale", str(scale),
                           "--data-dir", str(data), "--dagster-home", str(home)],
                          cwd=REPO, env=_env(data, home), capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise RuntimeError(f"the demo failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def candidates(warehouse: Path, n: int) -> list[Sample]:
    """Known, sendable customers outside cart_abandoners with no order in the last 3 hours."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute(f"""
            select m.identity, m.customer_key from core.identity_map m
            join marts.customer_profiles p on p.customer_key = m.customer_key
            where m.identity_type = 'user_id' and p.sendable
              and (p.last_order_at is null or p.last_order_at < now() - interval 3 hour)
              and m.customer_key not in (select customer_key from marts.segment_membership where segment = ?)
            order by m.customer_key limit ?""", [SEGMENT, n]).fetchall()
    if len(rows) < n:
        raise RuntimeError(f"only {len(rows)} candidate customers for {n} samples: raise --scale")
    return [Sample(user_id=str(u), customer_key=str(k)) for u, k in rows]


def members(warehouse: Path, keys: list[str]) -> set[str]:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute("select customer_key from marts.segment_membership where segment = ?"
                            " and customer_key in (select unnest(?))", [SEGMENT, keys]).fetchall()
    return {r[0] for r in rows}


def _env(data: Path, home: Path) -> dict[str, str]:
    env = {**os.environ, "DAGSTER_HOME": str(home), "PERSONALIZATION_DATA_DIR": str(data),
           "DAGSTER_DEPLOYMENT": "local", "EVENT_BUS_URL": f"sqlite:///{data}/events.db",
           "PYTHONWARNINGS": "ignore::FutureWarning"}
    for var in ("PERSONALIZATION_DUCKDB_PATH", "CRM_DATABASE_URL", "ORDERS_API_URL", "PERSONALIZATION_AUTOMATION",
                "PERSONALIZATION_NOW"):
        env.pop(var, None)
    return env


def start_dagster_dev(data: Path, home: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """`dagster dev` with SIGINT restored (started from a script it would ignore it)."""
    port = free_port()
    dagster = Path(sys.executable).with_name("dagster")
    wrapper = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "signal.signal(signal.SIGTERM, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", wrapper, str(dagster), "dev", "-m", "personalization_assets.definitions",
                             "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=_env(data, home), start_new_session=True,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {proc.returncode}; see {log}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=1).status_code == 200:
                return proc, port
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"dagster dev did not answer within 180 s; see {log}")


def stop(proc: subprocess.Popen, grace_s: float = 60) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    except ProcessLookupError:
        pass


def wait_idle(instance, quiet_s: float, timeout_s: float) -> None:
    """Until no run has been queued, starting or running for `quiet_s` (the daemon's first ticks
    may catch up on the demo's state; samples start after that)."""
    import dagster as dg

    busy = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED]
    deadline, calm_since = time.monotonic() + timeout_s, time.monotonic()
    while time.monotonic() < deadline:
        if instance.get_runs(dg.RunsFilter(statuses=busy), limit=1):
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since >= quiet_s:
            return
        time.sleep(1)


def send(port: int, sample: Sample) -> None:
    now = datetime.now(timezone.utc)
    sample.message_id = f"auto-{uuid.uuid4().hex[:12]}"
    carted = (now - timedelta(hours=2)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event = {"type": "track", "event": "Product Added", "userId": sample.user_id, "messageId": sample.message_id,
             "timestamp": carted, "properties": {"product_id": "P-AUTO", "sku": "SKU-AUTO", "price": 19.9,
                                                "quantity": 1, "currency": "EUR", "cart_id": f"cart-{sample.message_id}"}}
    r = requests.post(f"http://127.0.0.1:{port}/v1/track", data=orjson.dumps(event), timeout=10,
                      headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    if r.status_code != 200:
        raise RuntimeError(f"collector refused the sample: {r.status_code} {r.text}")
    sample.acked = time.time()


def _offset(bus_url: str, message_id: str) -> int:
    from personalization_assets.bus import open_bus

    bus = open_bus(bus_url)
    try:
        after = 0
        while batch := bus.read(after, limit=5000):
            for record in batch:
                if record.message_id == message_id:
                    return record.offset
            after = batch[-1].offset
    finally:
        bus.close()
    raise RuntimeError(f"event {message_id} is not on the bus")


def _materializations(instance, key: tuple[str, ...]) -> list[tuple[str, float]]:
    """(run id, time) of every materialization of `key`."""
    import dagster as dg

    records = instance.fetch_materializations(dg.AssetKey(list(key)), limit=1000).records
    return [(r.run_id, r.timestamp) for r in records]


def wait_sample(instance, sample: Sample, offset: int, timeout_s: float) -> None:
    """Fill `staged` (the micro-batch run holding the event committed staging.events) and
    `in_segment` (segment_membership materialized by a run created after that)."""
    import dagster as dg

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sample.staged is None:
            for run in instance.get_runs(dg.RunsFilter(job_name="event_micro_batch",
                                                       statuses=[dg.DagsterRunStatus.SUCCESS]), limit=50):
                if int(run.tags[OFFSET_FROM_TAG]) <= offset <= int(run.tags[OFFSET_TO_TAG]):
                    times = [t for run_id, t in _materializations(instance, STAGING_EVENTS) if run_id == run.run_id]
                    sample.staged = min(times) if times else None
        if sample.staged is not None:
            for run_id, at in sorted(_materializations(instance, MEMBERSHIP), key=lambda m: m[1]):
                record = instance.get_run_record_by_id(run_id)
                if record and record.create_timestamp.timestamp() >= sample.staged and at >= sample.acked:
                    sample.in_segment = at
                    return
        failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE],
                                                 created_after=datetime.fromtimestamp(sample.acked, timezone.utc)))
        if failed:
            raise RuntimeError(f"run {failed[0].run_id} ({failed[0].job_name}) failed; see {instance.root_directory}")
        time.sleep(0.5)
    raise RuntimeError(f"{sample.message_id}: no updated segment_membership within {timeout_s:.0f} s "
                       f"(staged: {sample.staged is not None})")


def run_bench(samples: int, scale: float, quiet: bool = False, keep: bool = False) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-automation-"))
    data, home = tmp / "data", tmp / "home"
    try:
        _say(quiet, f"[automation] building the demo warehouse (scale {scale}) in {tmp} ...")
        started = time.monotonic()
        build_demo(data, home, scale)
        chosen = candidates(data / "warehouse.duckdb", samples)
        _say(quiet, f"[automation] demo built in {time.monotonic() - started:.0f} s; starting dagster dev and the collector")
        os.environ.update({k: v for k, v in _env(data, home).items()
                           if k in ("DAGSTER_HOME", "PERSONALIZATION_DATA_DIR", "EVENT_BUS_URL")})
        bus_url = f"sqlite:///{data}/events.db"
        collector, port = start_collector(bus_url, 1)
        dev, ui_port = start_dagster_dev(data, home, tmp / "dagster-dev.log")
        try:
            import dagster as dg

            instance = dg.DagsterInstance.get()
            time.sleep(20)  # the daemon's first ticks
            wait_idle(instance, quiet_s=20, timeout_s=300)
            for k, sample in enumerate(chosen):
                time.sleep(random.uniform(0, 15))
                send(port, sample)
                wait_sample(instance, sample, _offset(bus_url, sample.message_id), timeout_s=300)
                _say(quiet, f"  sample {k + 1}/{len(chosen)}: staged after {sample.staged - sample.acked:.1f} s, "
                            f"in segment_membership after {sample.in_segment - sample.acked:.1f} s")
            runs = len(instance.get_runs(dg.RunsFilter(tags={"dagster/from_automation_condition": "true"})))
        finally:
            stop(dev)
            collector.terminate()
            collector.wait(30)
        found = members(data / "warehouse.duckdb", [s.customer_key for s in chosen])
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    lags = [s.in_segment - s.acked for s in chosen]
    staged = [s.staged - s.acked for s in chosen]
    return {"samples": len(chosen), "segment_p50_s": percentile(lags, 50), "segment_p95_s": percentile(lags, 95),
            "segment_max_s": max(lags), "staged_p50_s": percentile(staged, 50), "automation_runs": runs,
            "not_in_segment": len(chosen) - len(found), "target_p95_s": TARGET_P95_S}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5, help="events sent one after another")
    parser.add_argument("--scale", type=float, default=0.3, help="demo data size (1 is about 2,000 customers)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, instance)")
    args = parser.parse_args()
    out = run_bench(args.samples, args.scale, quiet=args.json, keep=args.keep)
    if args.json:
        print(json.dumps(out))
        return
    verdict = "OK" if out["segment_p95_s"] < TARGET_P95_S and not out["not_in_segment"] else "BELOW TARGET"
    print(f"\n[automation] collector 200 -> updated row in marts.segment_membership through event_stream_sensor "
          f"and the automation sensor (dagster dev, project dagster.yaml)")
    print(f"  {out['samples']} samples: p50 {out['segment_p50_s']:.1f} s  p95 {out['segment_p95_s']:.1f} s  "
          f"max {out['segment_max_s']:.1f} s (staged p50 {out['staged_p50_s']:.1f} s); "
          f"automation runs {out['automation_runs']}; not in {SEGMENT}: {out['not_in_segment']}  [{verdict}]")


if __name__ == "__main__":
    main()
