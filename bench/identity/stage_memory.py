"""Peak memory of the warehouse identity resolution, stage by stage, against the Dagster process's 2 GB.

    python -m bench.identity.stage_memory [--datasets gen3m] [--memory-limit 768MB]

Per dataset (generated as ``bench.identity.warehouse`` generates it), one child process loads the
records into a DuckDB file capped at ``--memory-limit`` (default: the Dagster resource's 768MB) and
runs ``resolve_in_warehouse``; at the end of each stage it reads the process's VmHWM and resets it
(``/proc/self/clear_refs``), so each figure is that stage's own peak RSS, DuckDB included. Linux only.
Target (issue 23): the Dagster process under 2 GB at 10M customers; ``core.customers`` runs this.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from tabulate import tabulate

from bench.identity.warehouse import ROOT, make

TARGET_MB = 2048


def _status_mb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS


def _worker(folder: str, memory_limit: str) -> None:
    from personalization_assets.identity import warehouse

    peaks: dict[str, int] = {}
    timed = warehouse._lap

    def lap_with_peak(laps: dict):  # the stage laps of _resolve, each also taking its peak
        lap = timed(laps)

        def both(name: str) -> None:
            lap(name)
            peaks[name] = _status_mb("VmHWM")
            _reset_peak()
        return both
    warehouse._lap = lap_with_peak
    with tempfile.TemporaryDirectory(prefix="bench-stage-memory-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "w.duckdb"))
        con.execute(f"set memory_limit = '{memory_limit}'")
        con.execute(f"set temp_directory = '{Path(tmp) / 'spill'}'")
        con.execute(f"create table records as select * exclude (entity) from read_parquet('{folder}/*.parquet')")
        start_mb = _status_mb("VmRSS")
        _reset_peak()
        t0 = time.perf_counter()
        res = warehouse.resolve_in_warehouse(con, "records", "crosswalk")
        seconds = time.perf_counter() - t0
        con.close()
    print(json.dumps({"seconds": round(seconds, 1), "start_mb": start_mb, "peaks_mb": peaks,
                      "stage_seconds": res.stats["stage_seconds"], "links": res.stats["links"]}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(*sys.argv[2:4])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="gen3m", help="gen1m, gen3m, gen10m, hh1m, ...")
    ap.add_argument("--memory-limit", default="768MB", help="DuckDB's memory_limit (the Dagster resource's default)")
    args = ap.parse_args()
    rows, stages = [], []
    with tempfile.TemporaryDirectory(prefix="bench-stage-memory-") as tmp:
        for name in args.datasets.split(","):
            folder = Path(tmp) / name
            n = make(name, folder)
            proc = subprocess.run([sys.executable, "-m", "bench.identity.stage_memory", "--worker", str(folder),
                                   args.memory_limit], cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{name}: the worker failed:\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{name}: {json.dumps(r)}", flush=True)
            stages = stages or list(r["peaks_mb"])
            peak = max(r["peaks_mb"].values())
            rows.append([name, n, r["links"], r["seconds"], r["start_mb"],
                         *(r["peaks_mb"].get(s, "-") for s in stages), peak,
                         "under" if peak < TARGET_MB else "OVER"])
    print()
    print(tabulate(rows, headers=["dataset", "records", "links", "s", "start MB", *(f"{s} MB" for s in stages),
                                  "peak MB", "vs 2 GB"]))
    print(f"DuckDB memory_limit {args.memory_limit}; peak RSS per stage, DuckDB included")


if __name__ == "__main__":
    main()
