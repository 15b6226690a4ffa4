"""Benchmark: the whole graph on DuckDB for N customers and 10 N events, per layer, with memory.

    python -m bench.scale --customers 1000000 [--events-per-customer 10] [--workdir DIR] [--no-plain]
                          [--arrival-days 30 --days-per-run 1] [--rss-cap-mb 6000] [--capture-outputs]
    python -m bench.scale --demo --customers 20000          (the old mode: the demo's sources)

1. Generate the raw data to Parquet in chunks (`bench/scale_data.py`: numpy/pyarrow, one chunk of
   `--chunk-rows` at a time): N customers, 1.5 N orders, 10 N events, N e-mail events.
2. Load them into `raw.crm_customers`, `raw.shop_orders`, `raw.events`, `raw.email_events` with the
   raw assets' schemas. The sources' transports (CRM database, orders API, event bus, e-mail files)
   are bypassed: the raw assets are not run or timed.
3. Run everything the `everything` job builds downstream of raw (seeds, staging, core, marts,
   audiences, activation, ...) through Dagster in ONE child process (`bench/scale_run.py`), which
   samples its own RSS and DuckDB's memory (`duckdb_memory()`) per step. By default one run over
   the two arrival days the rows came in on (as `personalization demo`); with `--arrival-days D
   --days-per-run K` the rows arrive over D days and events and orders are staged K days per run
   (a prod backfill's fan-out), still in that one process. Past `--rss-cap-mb` (default 6 GB: the
   machine is shared) the process stops and the report names the step it was in.
4. Print per layer: wall time, rows written, rows/s, peak RSS of the process, peak DuckDB memory,
   peak RSS minus DuckDB (Python heap and the rest); the steps with the highest peaks; the issue 23
   targets (1M/10M: peak RSS < 2 GB; 10M/100M: completes with the Dagster process < 2 GB).
5. Peer (unless --no-plain): `bench.marts`' plain DuckDB script over this run's warehouse: the
   profiles, segments and payloads SQL, recorded from the project's builders then replayed by a
   process that imports only duckdb, against the project's marts steps in the run above.
   No plain script exists for staging or identity, so only the marts are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from . import scale_data

TARGET_MB = 2048
MARTS_COMPARED = ("marts/customer_profiles", "marts/segment_membership", "marts/personalization_payloads")
# RUSAGE_CHILDREN of a wrapper that runs one command: that command's own peak RSS (told on stderr).
WRAPPER = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]);"
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,file=sys.stderr);sys.exit(r.returncode)")


def _run_graph(work: Path, now_iso: str, every: float, cap_mb: float, days: list[str]) -> tuple[dict, float]:
    """The child Dagster process; streams its step lines, returns its JSON and its peak RSS (MB)."""
    env = {**os.environ, "PERSONALIZATION_DATA_DIR": str(work / "data"), "DAGSTER_HOME": str(work / "home")}
    (work / "home").mkdir(exist_ok=True)
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "bench.scale_run", "--now", now_iso,
           "--every", str(every), "--rss-cap-mb", str(cap_mb), *days]
    proc = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[1])
    figures = None
    for line in proc.stdout:
        if line.startswith("{"):
            figures = json.loads(line)
            (work / "figures.json").write_text(line)  # every step's figures, for a closer look
        elif line.startswith("  step"):
            print(line.rstrip(), flush=True)
    err = proc.stderr.read()
    proc.wait()
    if figures is None:
        sys.exit(f"the Dagster process ended without figures (exit {proc.returncode}):\n{err[-4000:]}")
    return figures, int(err.strip().splitlines()[-1]) / 1024


def _plain_peer(db: Path, now_iso: str, memory_limit: str | None) -> dict:
    """bench.marts' two children over this warehouse: the project's marts builders (recording the
    SQL they send), then the plain DuckDB replay of that SQL. Each with its own peak RSS."""
    record = str(db.parent / "statements.pickle")
    limit = f", {memory_limit!r}" if memory_limit else ", None"
    out = {}
    for name, code in (
        ("builders", "import bench.marts as m; from personalization_assets import clock; "
                     f"m.AS_OF = clock.parse_instant({now_iso!r}); m.measure({str(db)!r}{limit}, 'sql', {record!r})"),
        ("plain", f"import bench.marts as m; m.plain({str(db)!r}{limit}, {record!r})"),
    ):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-c", code], capture_output=True,
                              text=True, cwd=Path(__file__).resolve().parents[1])
        if proc.returncode:
            out[name] = {"error": proc.stderr[-1500:]}
            continue
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        figures["peak_mb"] = int(proc.stderr.strip().splitlines()[-1]) / 1024
        figures["wall_s"] = time.perf_counter() - start
        out[name] = figures
    return out


def _report(figures: dict, peak_mb: float, args, sizes: dict, gen_s: float, load_s: float) -> None:
    steps = figures["steps"]
    layers: dict[str, dict] = {}
    for step, s in steps.items():
        layer = layers.setdefault(s["layer"], {"steps": 0, "s": 0.0, "rss": 0.0, "duck": 0.0, "py": 0.0})
        layer["steps"] += 1
        layer["s"] += s.get("seconds", 0.0)
        layer["rss"] = max(layer["rss"], s.get("rss_mb", 0.0))
        layer["duck"] = max(layer["duck"], s.get("duckdb_mb", 0.0))
        layer["py"] = max(layer["py"], s.get("rss_minus_duckdb_mb", 0.0))
    rows_by_layer: dict[str, int] = {}
    for asset, n in figures["rows"].items():
        rows_by_layer[figures["asset_layer"][asset]] = rows_by_layer.get(figures["asset_layer"][asset], 0) + n
    print("\nper layer (steps run one at a time; rows = rows written per asset, `dagster/row_count`):")
    print(f"{'layer':<12} {'steps':>5} {'wall s':>8} {'rows':>13} {'rows/s':>10} {'peak RSS MB':>12} "
          f"{'DuckDB MB':>10} {'RSS-DuckDB MB':>14}")
    total_rows = 0
    for name, layer in sorted(layers.items(), key=lambda kv: -kv[1]["s"]):
        rows = rows_by_layer.get(name, 0)
        total_rows += rows
        print(f"{name:<12} {layer['steps']:>5} {layer['s']:>8.1f} {rows:>13,} {rows / max(layer['s'], 1e-9):>10,.0f} "
              f"{layer['rss']:>12.0f} {layer['duck']:>10.0f} {layer['py']:>14.0f}")
    steps_s = sum(layer["s"] for layer in layers.values())
    print(f"{'graph':<12} {len(steps):>5} {steps_s:>8.1f} {total_rows:>13,} {total_rows / max(steps_s, 1e-9):>10,.0f} "
          f"{figures['peak']['rss_mb']:>12.0f} {figures['peak']['duckdb_mb']:>10.0f} "
          f"{figures['peak']['rss_minus_duckdb_mb']:>14.0f}")
    print(f"{figures.get('runs', 1)} run(s), wall {figures['run_s']:.1f} s (+ {figures['load_definitions_s']:.1f} s loading the definitions); "
          f"generate {gen_s:.1f} s, load raw {load_s:.1f} s (not counted)")
    print("\nsteps with the highest peak RSS (where memory grows):")
    print(f"{'step':<50} {'layer':<11} {'s':>7} {'RSS start':>10} {'peak RSS':>9} {'growth':>7} {'DuckDB':>7} "
          f"{'RSS-DuckDB':>11}  (MB; growth = peak - RSS at the step's start)")
    for step, s in sorted(steps.items(), key=lambda kv: -kv[1].get("rss_mb", 0))[:8]:
        print(f"{step:<50} {s['layer']:<11} {s.get('seconds', 0):>7.1f} {s['rss_start_mb']:>10.0f} "
              f"{s.get('rss_mb', 0):>9.0f} {s.get('rss_mb', 0) - s['rss_start_mb']:>7.0f} {s.get('duckdb_mb', 0):>7.0f} "
              f"{s.get('rss_minus_duckdb_mb', 0):>11.0f}")
    print("slowest steps:")
    for step, s in sorted(steps.items(), key=lambda kv: -kv[1].get("seconds", 0))[:8]:
        print(f"  {step:<50} {s['layer']:<11} {s.get('seconds', 0):>7.1f} s")
    if figures.get("aborted"):
        print(f"STOPPED in step {figures['aborted']}: RSS passed --rss-cap-mb {args.rss_cap_mb:.0f} MB")
    if figures["failures"] or figures["not_built"]:
        print(f"FAILED steps: {figures['failures']}\nnot built: {figures['not_built']}")
    if figures["failed_checks"]:
        print(f"failed checks: {', '.join(figures['failed_checks'])}")
    print(f"\npeak RSS of the Dagster process: {peak_mb:.0f} MB (getrusage; sampled {figures['peak']['rss_mb']:.0f} MB, "
          f"VmHWM {figures['vm_hwm_mb']:.0f} MB); DuckDB's own peak {figures['peak']['duckdb_mb']:.0f} MB "
          f"(+ {figures['peak']['duckdb_temp_mb']:.0f} MB spilled); RSS minus DuckDB peak "
          f"{figures['peak']['rss_minus_duckdb_mb']:.0f} MB ({figures['samples']} samples every {args.every} s)")
    verdict = "<" if peak_mb < TARGET_MB else ">="
    done = "completed" if figures["success"] else "did NOT complete"
    print(f"issue 23 target at {sizes['customers']:,} customers / {sizes['events']:,} events: the run {done}; "
          f"peak RSS {peak_mb:.0f} MB {verdict} 2 GB "
          f"({'met' if figures['success'] and peak_mb < TARGET_MB else 'NOT met'})")


def _report_peer(figures: dict, peer: dict) -> None:
    ours = sum(s.get("seconds", 0) for s in figures["steps"].values()
               if any(a in MARTS_COMPARED for a in s.get("assets", [])))
    ours_rss = max([s.get("rss_mb", 0) for s in figures["steps"].values()
                    if any(a in MARTS_COMPARED for a in s.get("assets", []))] or [0])
    print("\nvs a plain DuckDB script (bench.marts) over this run's warehouse: profiles, segments, payloads")
    for name in ("builders", "plain"):
        if "error" in peer.get(name, {}):
            print(f"  {name}: failed: {peer[name]['error']}")
            return
    b, p = peer["builders"], peer["plain"]
    built = b["profiles_s"] + b["write_s"] + b["segments_s"] + b["payloads_s"]
    print(f"  {'Dagster run, steps ' + ', '.join(MARTS_COMPARED):<80} {ours:8.1f} s  peak RSS {ours_rss:6.0f} MB  "
          f"x{ours / p['total_s']:.2f}")
    print(f"  {'the same builders outside Dagster (bench.marts --measure)':<80} {built:8.1f} s  peak RSS "
          f"{b['peak_mb']:6.0f} MB  x{built / p['total_s']:.2f}")
    print(f"  {'plain DuckDB script (' + str(p['statements']) + ' statements replayed)':<80} {p['total_s']:8.1f} s  "
          f"peak RSS {p['peak_mb']:6.0f} MB  x1.00")
    print(f"  target time <= 2x plain: {'met' if ours <= 2 * p['total_s'] else 'NOT met'} for the Dagster steps")


def _resume(work: Path, now_iso: str, args) -> None:
    """The Dagster process again over a stopped run's warehouse, for what that run left unbuilt."""
    print(f"bench.scale --resume: {work}, now {now_iso} (the first run's); building what it left unbuilt", flush=True)
    sizes = scale_data.counts(args.customers, args.events_per_customer, args.orders_per_customer,
                              args.email_events_per_customer)
    figures, peak_mb = _run_graph(work, now_iso, args.every, args.rss_cap_mb, ["--resume"])
    _report(figures, peak_mb, args, sizes, 0.0, 0.0)
    if not figures["success"]:
        sys.exit(1)


def demo_mode(customers: int) -> None:
    """The old mode: the demo generator seeds the demo's sources and `personalization demo` runs."""
    import re

    per_scale = 1_990  # the demo generator's customers at scale 1
    layer_line = re.compile(r"^  (\w+) +(\d+) of (\d+) +assets +([\d,]+) rows +([\d.]+) s")
    scale = customers / per_scale
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DAGSTER_HOME": os.path.join(tmp, "home")}
        cmd = [sys.executable, "-m", "personalization_assets.cli", "demo", "--scale", f"{scale:.4f}",
               "--data-dir", os.path.join(tmp, "data"), "--dagster-home", os.path.join(tmp, "home")]
        proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *cmd], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        print(f"demo mode: customers={customers} demo_scale={scale:.3f} (DuckDB memory not separated)")
        for line in proc.stdout:
            if line.startswith("  generated") or layer_line.match(line):
                print(line.rstrip())
        err = proc.stderr.read()
        if proc.wait() != 0:
            sys.exit(f"the run failed: {err[-2000:]}")
        print(f"peak_rss_mb={int(err.strip().splitlines()[-1]) / 1024:.0f} (seeding included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events-per-customer", type=float, default=10)
    parser.add_argument("--orders-per-customer", type=float, default=1.5)
    parser.add_argument("--email-events-per-customer", type=float, default=1.0)
    parser.add_argument("--chunk-rows", type=int, default=scale_data.CHUNK_ROWS)
    parser.add_argument("--workdir", type=Path, default=None, help="keep data, warehouse and instance here "
                        "(default: a temporary directory, removed at the end)")
    parser.add_argument("--every", type=float, default=0.25, help="memory sampling period, seconds")
    parser.add_argument("--arrival-days", type=int, default=0, help="spread the rows' arrival (received_at, "
                        "loaded_at) over this many days before now (default: the last 20 hours, as the demo's)")
    parser.add_argument("--days-per-run", type=int, default=0, help="stage events and orders this many arrival "
                        "days per run, as a prod backfill fans out (default 0: one run for everything)")
    parser.add_argument("--rss-cap-mb", type=float, default=6_000, help="stop the Dagster process when its RSS "
                        "passes this (a shared machine); the report then names the step it was in. 0: no cap")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain DuckDB peer")
    parser.add_argument("--capture-outputs", action="store_true", help="keep Dagster's in-process output capture "
                        "(execute_in_process holds every step's output value until the run ends; off by default)")
    parser.add_argument("--peer-memory-limit", default=None, help="DuckDB memory_limit for the peer's two processes")
    parser.add_argument("--demo", action="store_true", help="the old mode: seed the demo's sources, run the demo")
    parser.add_argument("--resume", action="store_true", help="with --workdir of a run that stopped: no generation "
                        "or load; the Dagster process builds only what that run left unbuilt (assets never "
                        "materialized, checks of built assets that did not pass) over its warehouse and instance")
    args = parser.parse_args()
    if args.demo:
        return demo_mode(args.customers)
    if args.resume and not (args.workdir and (args.workdir / "data" / "warehouse.duckdb").exists()
                            and (args.workdir / "now.txt").exists()):
        sys.exit("--resume needs the --workdir of an earlier run (its data/warehouse.duckdb and now.txt)")
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="bench-scale-")
    work = args.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    (work / "data").mkdir(exist_ok=True)
    if args.resume:  # the data set's now is the first run's
        return _resume(work, (work / "now.txt").read_text().strip(), args)
    now = scale_data.default_now()
    now_iso = now.isoformat().replace("+00:00", "Z")
    (work / "now.txt").write_text(now_iso)
    load_avg = os.getloadavg()
    print(f"bench.scale: {args.customers:,} customers, now {now_iso}, workdir {work}; load average "
          f"{load_avg[0]:.1f} on {os.cpu_count()} cores (a shared machine: figures are under that load)")
    print("raw tables written straight from Parquet: the CRM, orders API, event bus and e-mail file transports "
          "are bypassed (raw assets not run)")
    started = time.perf_counter()
    sizes = scale_data.generate(work / "parquet", args.customers, now, events_per_customer=args.events_per_customer,
                                orders_per_customer=args.orders_per_customer,
                                email_per_customer=args.email_events_per_customer, chunk_rows=args.chunk_rows,
                                arrival_days=args.arrival_days)
    gen_s = time.perf_counter() - started
    import resource

    print(f"  generator peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          f"(chunks of {args.chunk_rows:,} rows)")
    db = work / "data" / "warehouse.duckdb"
    started = time.perf_counter()
    scale_data.load(db, work / "parquet")
    load_s = time.perf_counter() - started
    shutil.rmtree(work / "parquet")  # loaded: free the disk before the run
    print("Dagster run (everything minus raw), one line per step:", flush=True)
    days = []
    if args.days_per_run:
        first = (now - timedelta(days=args.arrival_days or 1)).strftime("%Y-%m-%d")
        days = ["--first-day", first, "--days-per-run", str(args.days_per_run)]
        print(f"staging of events and orders fans out: {args.days_per_run} arrival day(s) per run from {first}, "
              "after a run for the CRM customers; then one run for the rest (all in this one process)")
    if args.capture_outputs:
        days.append("--capture-outputs")
    figures, peak_mb = _run_graph(work, now_iso, args.every, args.rss_cap_mb, days)
    _report(figures, peak_mb, args, sizes, gen_s, load_s)
    if not args.no_plain and figures["success"]:
        _report_peer(figures, _plain_peer(db, now_iso, args.peer_memory_limit))
    if tmp:
        tmp.cleanup()
    if not figures["success"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
