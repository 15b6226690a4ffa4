"""Benchmark: personalization payloads from a built warehouse (a demo's, for example), the Python
builder against the one-statement SQL builder, in the same run.

    personalization demo --scale 3 --data-dir /tmp/b/d --dagster-home /tmp/b/h
    python -m bench.payloads --warehouse /tmp/b/d/warehouse.duckdb [--repeat 3]

Works on a copy of the warehouse (a running demo keeps its file). Each builder runs in its own child
process, so each peak RSS is its own: `python` selects the rows with SQL and shapes them in Python
(`marts.payloads.build_payloads`), `sql` writes the table in one statement
(`marts.payloads_sql.write_payloads`). Then the two outputs are compared payload by payload.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRAPPER = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]);"
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,file=sys.stderr);sys.exit(r.returncode)")


def measure(db: str, mode: str, repeat: int) -> None:
    """Child process: `repeat` builds with one builder; prints one JSON line."""
    import duckdb

    from personalization_assets.marts import payloads, payloads_sql
    from personalization_assets.warehouse import WarehouseConnection

    conn = WarehouseConnection(duckdb.connect(db), "duckdb")
    times, rows, sql_s = [], 0, []
    for _ in range(repeat):
        start = time.perf_counter()
        if mode == "python":
            payloads._rows(conn, payloads.InputTables(), "marts.customer_profiles", "marts.segment_membership")
            sql_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            frame = payloads.build_payloads(conn)
            times.append(time.perf_counter() - start)
            rows = len(frame)
            conn.execute("create schema if not exists bench")
            conn.raw.register("_frame", frame)
            conn.execute("create or replace table bench.python_payloads as select * from _frame")
            conn.raw.unregister("_frame")
        else:
            rows = payloads_sql.write_payloads(conn, target="bench.sql_payloads")
            times.append(time.perf_counter() - start)
    print(json.dumps({"times": times, "rows": rows, "select_s": sql_s}))


def _child(db: Path, mode: str, repeat: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "bench.payloads",
                           "--measure", str(db), "--mode", mode, "--repeat", str(repeat)],
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["peak_mb"] = int(proc.stderr.strip().splitlines()[-1]) / 1024
    return figures


def compare(db: Path) -> tuple[int, int]:
    """(payload rows that differ in any column, rows in only one of the outputs)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    differ = con.execute("select count(*) from bench.python_payloads p join bench.sql_payloads s "
                         "using (customer_key) where p.payload <> s.payload or p.email is distinct from s.email "
                         "or p.loyalty_tier <> s.loyalty_tier or p.discount_eligible <> s.discount_eligible "
                         "or p.currency <> s.currency or p.locale <> s.locale").fetchone()[0]
    alone = con.execute("select count(*) from bench.python_payloads p full join bench.sql_payloads s "
                        "using (customer_key) where p.payload is null or s.payload is null").fetchone()[0]
    con.close()
    return differ, alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", help="a DuckDB file holding marts.customer_profiles and segment_membership")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure, args.mode, args.repeat)
    if not args.warehouse:
        parser.error("--warehouse is required")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "warehouse.duckdb"
        shutil.copy(args.warehouse, copy)
        figures = {mode: _child(copy, mode, args.repeat) for mode in ("python", "sql")}
        for mode, f in figures.items():
            best = min(f["times"])
            label = "python (rows by SQL, JSON in Python)" if mode == "python" else "sql (one DuckDB statement)"
            select = f"  row selection {min(f['select_s']):.2f} s" if f["select_s"] else ""
            print(f"{label:<38} payloads={f['rows']:,}  best of {args.repeat}: {best:7.2f} s "
                  f"({best / max(1, f['rows']) * 1e6:6.1f} us/payload)  peak RSS {f['peak_mb']:6.0f} MB{select}")
        differ, alone = compare(copy)
        py, sq = min(figures["python"]["times"]), min(figures["sql"]["times"])
        print(f"sql vs python: time x{sq / py:.2f}, peak RSS x{figures['sql']['peak_mb'] / figures['python']['peak_mb']:.2f}; "
              f"payloads that differ: {differ}, in one output only: {alone}")


if __name__ == "__main__":
    main()
