"""The Dagster process of `bench.scale`: everything the `everything` job builds downstream of raw, in one run.

    python -m bench.scale_run --now 2026-12-05T12:00:00Z   (PERSONALIZATION_DATA_DIR and DAGSTER_HOME set)

Runs in this process (in-process executor, as `personalization demo` does) a job with the `everything`
job's selection minus the `raw` assets (the raw tables are already loaded), over the arrival days
from `now` - 1 day to today. A sampling thread reads, every `--every` seconds, this process's RSS
(/proc/self/status) and DuckDB's own memory (`sum(memory_usage_bytes)` of `duckdb_memory()`, asked
through a cursor of each open DuckDB connection: the sampler never opens the database itself)
and charges both to the step running. Prints a line per step as it ends, then one JSON line.
Dagster's output capture (execute_in_process keeps every output value until the run ends) is off
unless `--capture-outputs`, as in `personalization demo` (`resources/pool.execute_uncaptured`): a
deployed run's executor keeps none either.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import uuid
import weakref
from datetime import datetime, timedelta

KIB = 1024


def _rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def heap_mb() -> dict[str, float]:
    """Where the process's memory is, between steps: glibc's heap in use (live Python objects,
    pandas and numpy buffers, DuckDB's own allocations) and free but kept by glibc (RSS that
    `malloc_trim` would return), and Arrow's pool in use. Empty off glibc."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    import pyarrow as pa

    return {"heap_used_mb": (info.uordblks + info.hblkhd) / KIB / KIB, "heap_free_mb": info.fordblks / KIB / KIB,
            "arrow_mb": pa.total_allocated_bytes() / KIB / KIB}


class Tracked:
    """A DuckDB connection as the code that opened it sees it (every attribute passes through),
    whose close waits while the sampler reads DuckDB's memory through a cursor of it: closing a
    connection whose cursor is busy would fail the step."""

    def __init__(self, connection, sampler: "Sampler"):
        object.__setattr__(self, "_connection", connection)
        object.__setattr__(self, "_sampler", sampler)
        object.__setattr__(self, "_closed", False)

    def __getattr__(self, name):
        return getattr(self._connection, name)

    def __setattr__(self, name, value):
        setattr(self._connection, name, value)

    def close(self) -> None:
        with self._sampler.lock:
            object.__setattr__(self, "_closed", True)
            self._connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Sampler:
    """RSS and DuckDB memory, sampled in a thread, peaks kept overall and per step."""

    def __init__(self, every: float, cap_mb: float = 0.0):
        self.every = every
        self.cap_mb = cap_mb  # above this RSS the process reports and exits (a shared machine)
        self.on_cap = None
        self.open: list = []  # weak references to the Tracked connections
        self.lock = threading.Lock()
        self.step: str | None = None
        self.steps: dict[str, dict] = {}
        self.peak = {"rss_mb": 0.0, "duckdb_mb": 0.0, "rss_minus_duckdb_mb": 0.0, "duckdb_temp_mb": 0.0}
        self.samples = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="scale-sampler", daemon=True)

    def track(self, connection) -> Tracked:
        tracked = Tracked(connection, self)
        with self.lock:
            self.open.append(weakref.ref(tracked))
        return tracked

    def _duckdb(self) -> tuple[float, float]:
        """DuckDB's memory now: asked through a short-lived cursor of each open connection (the
        sampler never opens a database itself); connections of one file share one instance, so
        the largest reading counts, not the sum."""
        used = temp = 0.0
        with self.lock:
            alive = []
            for ref in self.open:
                tracked = ref()
                if tracked is None or tracked._closed:
                    continue
                alive.append(ref)
                try:
                    cursor = tracked._connection.cursor()
                    try:
                        u, t = cursor.execute("select sum(memory_usage_bytes), sum(temporary_storage_bytes) "
                                              "from duckdb_memory()").fetchone()
                    finally:
                        cursor.close()
                except Exception:  # noqa: BLE001 - closed without close() (garbage): not sampled
                    continue
                used, temp = max(used, (u or 0) / KIB / KIB), max(temp, (t or 0) / KIB / KIB)
            self.open = alive
        return used, temp

    def sample(self) -> None:
        rss = _rss_kib() / KIB
        duck, temp = self._duckdb()
        self.samples += 1
        values = {"rss_mb": rss, "duckdb_mb": duck, "rss_minus_duckdb_mb": rss - duck, "duckdb_temp_mb": temp}
        for k, v in values.items():
            self.peak[k] = max(self.peak[k], v)
        step = self.step
        if step is not None and step in self.steps:
            entry = self.steps[step]
            for k, v in values.items():
                entry[k] = max(entry.get(k, 0.0), v)
        if self.cap_mb and rss > self.cap_mb and self.on_cap is not None:
            self.on_cap(step, rss)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)


def patch_duckdb(sampler: Sampler) -> None:
    """Every duckdb.connect in this process returns a Tracked connection (bench only)."""
    import duckdb

    original = duckdb.connect

    def connect(*args, **kwargs):
        return sampler.track(original(*args, **kwargs))

    duckdb.connect = connect


def left_unbuilt(selection, instance):
    """`selection` minus what an earlier run in `instance` built: its assets with a materialization
    leave (with their checks), but a check of theirs whose latest evaluation did not pass stays."""
    import dagster as dg

    from personalization_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    built = {k for k in selection.resolve(graph) if instance.get_latest_materialization_event(k) is not None}
    record = instance.get_latest_asset_check_evaluation_record
    again = [c for c in selection.resolve_checks(graph)
             if c.asset_key in built and getattr(getattr(record(c), "status", None), "value", None) != "SUCCEEDED"]
    print(f"resume: {len(built)} assets built before, left out; {len(again)} of their checks run again: "
          f"{', '.join(c.to_user_string() for c in again) or '-'}", flush=True)
    return (selection - dg.AssetSelection.assets(*built)) | dg.AssetSelection.checks(*again)


def build_jobs(first_day: str | None, last_day: str, days_per_run: int, resume: bool = False):
    """The runs to make, in order: (job, run tags). One run of the `everything` selection minus raw
    over the arrival days `last_day` - 1 .. `last_day`; or, with `days_per_run`, the CRM customers
    first, then the partitioned staging assets (events, orders) `days_per_run` days per run from
    `first_day`, as prod fans a backfill out, then everything else in one run."""
    from datetime import date

    import dagster as dg

    from personalization_assets.definitions import defs
    from personalization_assets.partitions import STREAM_PARTITIONED, range_tags
    from personalization_assets.schedules import everything_job

    selection = everything_job.selection - dg.AssetSelection.key_prefixes("raw")
    last = date.fromisoformat(last_day)
    recent = range_tags(str(last - timedelta(days=1)), last_day)  # as the daily schedule's run (computed traits read it)
    if resume:
        plan = [("scale_resume", left_unbuilt(selection, dg.DagsterInstance.get()), [recent])]
    elif not days_per_run:
        plan = [("scale_bench", selection, [recent])]
    else:
        first = date.fromisoformat(first_day or last_day)
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        customers = dg.AssetSelection.assets(["staging", "customers"]).upstream() - dg.AssetSelection.key_prefixes("raw")
        streams = STREAM_PARTITIONED & selection
        plan = [("scale_customers", customers, [{}]),
                ("scale_streams", streams, [range_tags(str(days[i]), str(days[min(i + days_per_run, len(days)) - 1]))
                                            for i in range(0, len(days), days_per_run)]),
                ("scale_rest", selection - customers - streams, [recent])]
    merged = dg.Definitions.merge(defs(), dg.Definitions(
        jobs=[dg.define_asset_job(name, selection=sel) for name, sel, _ in plan]))
    return [(merged.resolve_job_def(name), tags) for name, _, tags in plan]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--now", required=True, help="the data set's now, ISO 8601")
    parser.add_argument("--every", type=float, default=0.25, help="sampling period in seconds")
    parser.add_argument("--first-day", default=None, help="first arrival day (with --days-per-run)")
    parser.add_argument("--days-per-run", type=int, default=0,
                        help="stage events and orders this many arrival days per run (0: one run for everything)")
    parser.add_argument("--rss-cap-mb", type=float, default=6_000,
                        help="stop the run (report, exit 3) when this process's RSS passes it; 0: no cap")
    parser.add_argument("--resume", action="store_true", help="only what an earlier run in this instance left unbuilt")
    parser.add_argument("--capture-outputs", action="store_true",
                        help="keep Dagster's in-process output capture (every output value held until the run ends)")
    args = parser.parse_args()
    sampler = Sampler(args.every, args.rss_cap_mb)
    patch_duckdb(sampler)
    started = time.perf_counter()

    import dagster as dg

    from personalization_assets import clock
    from personalization_assets.demo.progress import layer_of, step_layers
    from personalization_assets.partitions import day_of

    now = clock.parse_instant(args.now)
    runs = build_jobs(args.first_day, day_of(max(now, datetime.now(now.tzinfo))), args.days_per_run, args.resume)
    layers = {step: layer for job, _ in runs for step, layer in step_layers(job).items()}
    loaded_s = time.perf_counter() - started
    rows: dict[str, int] = {}  # asset -> rows written, summed over runs (a range run repeats its one count per day)
    run_rows: dict[str, int] = {}  # this run's
    asset_layer: dict[str, str] = {}
    failures: list[str] = []
    failed_checks: list[str] = []
    begun: dict[str, float] = {}

    def handle(event: dg.DagsterEvent) -> None:
        step, kind = event.step_key, event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            sampler.sample()
            entry = sampler.steps.setdefault(step, {"layer": layers.get(step, "other"), "rss_start_mb": _rss_kib() / KIB,
                                                    "seconds": 0.0, "runs": 0})
            entry["runs"] += 1
            sampler.step = step
            begun[step] = time.perf_counter()
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            m = event.event_specific_data.materialization
            value = m.metadata.get("dagster/row_count")
            key = m.asset_key.to_user_string()
            run_rows[key] = int(value.value) if value is not None and value.value else 0
            asset_layer[key] = layer_of(m.asset_key)
            if step in sampler.steps and key not in sampler.steps[step].setdefault("assets", []):
                sampler.steps[step]["assets"].append(key)
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.event_specific_data
            if not check.passed:
                failed_checks.append(f"{check.asset_key.to_user_string()}:{check.check_name} ({check.severity.value})")
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
                      dg.DagsterEventType.STEP_SKIPPED) and step in begun:
            sampler.sample()
            entry = sampler.steps[step]
            entry["seconds"] += time.perf_counter() - begun.pop(step)
            entry["rss_end_mb"] = _rss_kib() / KIB
            entry.update({f"end_{k}": v for k, v in heap_mb().items()})
            entry["status"] = kind.value
            if kind == dg.DagsterEventType.STEP_FAILURE:
                error = event.step_failure_data.error
                while error is not None and error.cause is not None:  # the root cause, not Dagster's wrapper
                    error = error.cause
                failures.append(f"{step}: {(error.message.strip() if error else 'failed')[:600]}")
            sampler.step = None
            print(f"  step {step:<48} {entry['layer']:<11} {entry['seconds']:8.1f} s  "
                  f"peak RSS {entry.get('rss_mb', 0):7.0f} MB  DuckDB {entry.get('duckdb_mb', 0):7.0f} MB  "
                  f"{kind.value.lower().replace('step_', '')}  (at its end: RSS {entry['rss_end_mb']:.0f} MB, glibc heap "
                  f"in use {entry.get('end_heap_used_mb', 0):.0f} MB, free {entry.get('end_heap_free_mb', 0):.0f} MB, "
                  f"Arrow {entry.get('end_arrow_mb', 0):.0f} MB)", flush=True)

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            event = getattr(record, "dagster_event", None)
            if event is not None:
                handle(event)

    @dg.logger(description="bench.scale: per-step timings and memory")
    def bench_logger(_init_context) -> logging.Logger:
        log = logging.getLogger("bench_scale")
        log.setLevel(logging.DEBUG)
        log.propagate = False
        log.handlers = [Handler()]
        return log

    tags = [t for _, run_tags in runs for t in run_tags]

    def over_cap(step: str | None, rss: float) -> None:
        """Called by the sampler thread: report what ran so far and stop the process at once."""
        import os

        if step in sampler.steps:
            entry = sampler.steps[step]
            entry.update(seconds=entry["seconds"] + time.perf_counter() - begun.get(step, time.perf_counter()),
                         status="ABORTED", rss_end_mb=rss)
        failures.append(f"{step}: stopped by bench.scale at RSS {rss:.0f} MB > cap {sampler.cap_mb:.0f} MB "
                        f"(--rss-cap-mb), {time.perf_counter() - begun.get(step, 0):.0f} s into the step")
        print(f"  step {step:<48} ABORTED at RSS {rss:.0f} MB (cap {sampler.cap_mb:.0f} MB)", flush=True)
        print(json.dumps({
            "success": False, "run_s": time.perf_counter() - run_started, "load_definitions_s": loaded_s,
            "steps": sampler.steps, "rows": {k: rows.get(k, 0) + run_rows.get(k, 0) for k in {*rows, *run_rows}},
            "asset_layer": asset_layer, "failures": failures,
            "failed_checks": failed_checks, "not_built": ["(run stopped)"], "peak": sampler.peak,
            "vm_hwm_mb": _rss_kib("VmHWM") / KIB, "samples": sampler.samples, "tags": tags, "aborted": step}),
            flush=True)
        os._exit(3)

    sampler.on_cap = over_cap
    from personalization_assets.resources.pool import execute_uncaptured
    run_started = time.perf_counter()
    sampler.start()
    success, built, expected = True, set(), set()
    with clock.pinned(now):
        for job, run_tags in runs:
            expected |= {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
            for tags_of_run in run_tags:
                logged = job.with_logger_defs({"bench_scale": bench_logger})
                kwargs = {"raise_on_error": False, "tags": tags_of_run, "run_config": {"loggers": {"bench_scale": {}}}}
                result = (logged.execute_in_process(instance=dg.DagsterInstance.get(), **kwargs) if args.capture_outputs
                          else execute_uncaptured(logged, dg.DagsterInstance.get(), str(uuid.uuid4()), **kwargs))
                success = success and result.success
                for key, n in run_rows.items():
                    rows[key] = rows.get(key, 0) + n
                run_rows.clear()
                built |= {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    run_s = time.perf_counter() - run_started
    sampler.sample()
    sampler.stop()
    not_built = sorted(expected - built)
    print(json.dumps({
        "success": success, "run_s": run_s, "runs": len(tags), "load_definitions_s": loaded_s, "steps": sampler.steps,
        "rows": rows, "asset_layer": asset_layer, "failures": failures, "failed_checks": failed_checks,
        "not_built": not_built, "peak": sampler.peak, "vm_hwm_mb": _rss_kib("VmHWM") / KIB,
        "samples": sampler.samples, "tags": tags}), flush=True)
    sys.exit(0 if success else 1)


if __name__ == "__main__":
    main()
