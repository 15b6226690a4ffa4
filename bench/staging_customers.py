"""Benchmark: staging.customers at N CRM customers, whole-table pandas vs chunked and incremental.

    python -m bench.staging_customers [--customers 1000000] [--changed 0.01] [--skip-whole]

Raw CRM rows are generated straight into a DuckDB file with SQL (seeded hashes: names in mixed
case with stray spaces, e-mails, national phone numbers, country spellings, consent spellings,
birth dates). Each measured step runs in its own child process, so its peak RSS is its own:
1. whole: `stage_customers` over the whole raw table in one pandas frame (the way before issue 23);
2. first: `restage_customers` on an empty staging (every row changed, chunks of 50k);
3. again: the same after `--changed` of the rows changed in raw (only they are staged).
The whole-table and chunked results are compared row for row in the warehouse.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GENERATE = """
set TimeZone = 'UTC';
create macro h(a, b) as cast(hash(a, b) % 2147483647 as bigint);
create schema raw;
create table raw.crm_customers as
select cast(i as bigint) as customer_id,
       case when h(i, 1) % 3 = 0 then upper('anna' || (i % 991)) else ' Anna' || (i % 991) || ' ' end as first_name,
       'lee-' || (i % 1499) as last_name,
       case when h(i, 2) % 50 = 0 then 'broken' || i || '.example.org' else 'User' || i || '@Example.COM' end as email,
       ['07911 ' || lpad(cast(h(i, 3) % 1000000 as varchar), 6, '0'),
        '030 ' || lpad(cast(h(i, 3) % 10000000 as varchar), 7, '0'),
        '+1 415 555 ' || lpad(cast(h(i, 3) % 10000 as varchar), 4, '0')][1 + i % 3] as phone,
       (i % 300) || ' High Street' as street, 'Town ' || (i % 700) as city, cast(10000 + i % 89999 as varchar) as postcode,
       ['United Kingdom', 'DE', 'usa', 'Deutschland', 'gb'][1 + i % 5] as country,
       strftime(date '1950-01-01' + cast(h(i, 4) % 20000 as integer), '%Y-%m-%d') as birth_date,
       ['Europe/London', 'Europe/Berlin', 'America/New_York'][1 + i % 3] as timezone,
       ['en-GB', 'de-DE', 'en-US'][1 + i % 3] as locale,
       ['true', 'false', 'yes', 'Y', '1', 'maybe'][1 + h(i, 5) % 6] as email_opt_in,
       ['true', 'false'][1 + h(i, 6) % 2] as consent_processing,
       timestamptz '2024-01-01 00:00:00+00' + to_seconds(cast(h(i, 7) % (700 * 86400) as bigint)) as created_at,
       timestamptz '2026-01-01 00:00:00+00' as updated_at
from range($customers) t(i);
"""


def measure(db: str, step: str, changed: float) -> None:
    """Child process: one step. Prints one JSON line."""
    import duckdb

    from personalization_assets.assets.staging import restage_customers
    from personalization_assets.clock import utc_now
    from personalization_assets.staging import stage_customers
    from personalization_assets.warehouse import WarehouseConnection

    conn = WarehouseConnection(duckdb.connect(db), "duckdb")
    start = time.perf_counter()
    if step == "whole":
        raw = conn.query("select * from raw.crm_customers")
        result = stage_customers(raw, now=utc_now())
        conn.prepare_table("old", "customers", result.valid)
        conn.replace_frame("old", "customers", result.valid)
        figures = {"rows_in": len(raw), "valid": len(result.valid)}
    else:
        if step == "again":
            conn.execute("update raw.crm_customers set first_name = 'changed ' || first_name, "
                         "updated_at = updated_at + interval 1 day where hash(customer_id, 99) % 10000 < ?",
                         [int(changed * 10000)])
            start = time.perf_counter()
        run, _ = restage_customers(conn)
        figures = {"rows_in": run.rows_in, "valid": run.valid, "chunks": run.chunks}
    figures["seconds"] = time.perf_counter() - start
    print(json.dumps(figures))


def _child(db: Path, step: str, changed: float) -> dict:
    wrapper = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]);"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,file=sys.stderr);sys.exit(r.returncode)")
    proc = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "bench.staging_customers",
                           "--measure", str(db), "--step", step, "--changed", str(changed)],
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{step} failed:\n{proc.stderr[-3000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["peak_mb"] = int(proc.stderr.strip().splitlines()[-1]) / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of rows changed before the rerun")
    parser.add_argument("--skip-whole", action="store_true", help="leave out the whole-table pandas baseline")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure, args.step, args.changed)
    import duckdb

    with tempfile.TemporaryDirectory(prefix="bench-staging-") as tmp:
        db = Path(tmp) / "warehouse.duckdb"
        start = time.perf_counter()
        con = duckdb.connect(str(db))
        con.execute(GENERATE.replace("$customers", str(args.customers)))
        con.close()
        print(f"raw.crm_customers: {args.customers:,} rows (generated in {time.perf_counter() - start:.1f} s)")
        steps = ([] if args.skip_whole else ["whole"]) + ["first", "again"]
        results = {}
        for step in steps:
            results[step] = r = _child(db, step, args.changed)
            label = {"whole": "whole table, one pandas frame (before)",
                     "first": "chunked, every row changed (first run)",
                     "again": f"incremental, {args.changed:.1%} of rows changed"}[step]
            print(f"{label:<42} {r['seconds']:8.1f} s  peak RSS {r['peak_mb']:7.0f} MB  "
                  f"rows staged {r['rows_in']:>10,}  valid {r['valid']:>10,}")
            if step == "first" and "whole" in results:
                _compare(db, results["whole"], r)


def _compare(db: Path, whole: dict, first: dict) -> None:
    import duckdb

    con = duckdb.connect(str(db))
    cols = ", ".join(f'"{c}"' for c in con.execute("select * from old.customers limit 0").df().columns)
    diff = [con.execute(f"select count(*) from (select {cols} from {a} except all select {cols} from {b})").fetchone()[0]
            for a, b in (("old.customers", "staging.customers"), ("staging.customers", "old.customers"))]
    con.close()
    print(f"rows only in the whole-table result: {diff[0]}, only in the chunked one: {diff[1]} (0, 0 = the same)")
    print(f"chunked vs whole: time x{first['seconds'] / whole['seconds']:.2f}, "
          f"peak RSS x{first['peak_mb'] / whole['peak_mb']:.2f}")


if __name__ == "__main__":
    main()
