"""Benchmark: customer profiles, every segment and the personalization payloads for 1M customers
and 10M events, against a plain DuckDB script doing the same SQL work, in the same run.

    python -m bench.marts [--customers 1000000] [--events 10000000] [--db PATH] [--keep]

Synthetic data are generated straight into a DuckDB file with SQL (seeded hashes, so every run
sees the same data). Each measured build runs in a fresh child process, so each peak RSS is its
own (the generator's is not counted):
- `python payloads`: profiles (in SQL; the CLV models fitted in Python on a sample), segments
  (SQL), payloads shaped in Python from SQL-selected rows (`marts.payloads.build_payloads`);
- `sql payloads`: the same, payloads written in SQL (`marts.payloads_sql`);
- `plain DuckDB script`: the SQL statements the `sql payloads` build sent, replayed by a process
  that imports only duckdb (queries become `create table ... as`): the same SQL work without
  pandas or the CLV fit. The target of issue 23: peak RSS < 2 GB and time <= 2x this script.
Every build and the script run with the same DuckDB memory_limit: `--memory-limit`, else the
warehouse resource's default (`WAREHOUSE_DUCKDB_MEMORY_LIMIT`, else a quarter of RAM, at most 768 MB).
The total is also compared with the fastest segment refresh cadence (cart abandoners, 15 min).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

AS_OF = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
CADENCE_SECONDS = 15 * 60

GENERATE = """
set TimeZone = 'UTC';
create macro h(a, b) as cast(hash(a, b) % 2147483647 as bigint);
create schema core; create schema staging; create schema activation;
create table core.customers as
select 'c' || i as customer_key, 'user' || i || '@example.com' as email,
       case when i % 17 = 0 then null else 'Name' || (i % 997) end as first_name, 'Last' as last_name,
       ['GB', 'DE', 'US', 'JP'][1 + i % 4] as country,
       ['Europe/London', 'Europe/Berlin', 'America/New_York', 'Asia/Tokyo'][1 + i % 4] as timezone,
       ['en-GB', 'de-DE', 'en-US', 'ja-JP'][1 + i % 4] as locale,
       h(i, 1) % 100 >= 8 as email_opt_in, h(i, 2) % 100 >= 3 as consent_processing,
       $as_of - to_seconds(cast(h(i, 3) % (900 * 86400) as bigint)) as created_at
from range($customers) t(i);
create table core.customer_crosswalk as
select 'crm:c' || i as record_id, 'c' || i as customer_key, 'exact:email_key' as rule from range($customers) t(i);
create table core.identity_map as
select 'user_id' as identity_type, 'c' || i as identity, 'c' || i as customer_key from range($customers) t(i);
create table staging.orders as
-- Each buyer is active for a while and then drops out (as BG/NBD assumes): orders fall between
-- a first-purchase day and first day + an active span of up to a year, never after as_of.
select 'o' || j as order_id, 'crm:c' || c as customer_record_id,
       null::varchar as email, case when j % 50 = 0 then 'cancelled' else 'completed' end as status,
       ['GBP', 'EUR', 'USD'][1 + j % 3] as currency, cast(500 + h(j, 5) % 20000 as bigint) as total_minor,
       cast(500 + h(j, 5) % 20000 as bigint) as total_reporting_minor, 1.0 as fx_rate,
       least($as_of, $as_of - to_days(cast(h(c, 20) % 730 as integer))
                     + to_seconds(cast(h(j, 6) % (1 + h(c, 21) % (365 * 86400)) as bigint))) as created_at,
       null::varchar as cart_id
from (select j, h(j, 4) % ($customers * 6 // 10) as c from range($orders) t(j)) o;
create table staging.order_lines as
select o.order_id, k + 1 as line_no, 'SKU' || (h(o.order_id, k) % 5000) as sku,
       'Product ' || (h(o.order_id, k) % 5000) as product_name,
       'category' || (h(o.order_id, k) % 5000 % 40) as category, 1 as quantity,
       o.total_minor // 2 as unit_price_minor, o.total_minor // 2 as line_total_minor, o.currency
from staging.orders o cross join range(2) r(k);
create table staging.events as
select 'm' || e as message_id, 'track' as type,
       case when h(e, 7) % 10 < 7 then 'product viewed' else 'product added' end as event,
       'c' || (h(e, 8) % $customers) as user_id, null::varchar as anonymous_id,
       $as_of - to_seconds(cast(h(e, 9) % (30 * 86400) as bigint)) as timestamp,
       $as_of - to_seconds(cast(h(e, 9) % (30 * 86400) as bigint)) + to_seconds(2) as received_at,
       'cart' || (h(e, 8) % $customers) || '-' || (h(e, 10) % 3) as cart_id,
       'SKU' || (h(e, 11) % 5000) as sku, null::varchar as category, 'GBP' as currency,
       null::varchar as checkout_id, null::varchar as order_id,
       cast(500 + h(e, 12) % 9000 as bigint) as value_minor
from range($events) t(e);
create table staging.email_events as
select 'sendgrid' as provider, 'p' || e as provider_event_id,
       ['open', 'open', 'click', 'delivered', 'bounce'][1 + h(e, 13) % 5] as type,
       'user' || (h(e, 14) % $customers) || '@example.com' as email, null::varchar as customer_key,
       $as_of - to_seconds(cast(h(e, 15) % (60 * 86400) as bigint)) as timestamp,
       h(e, 16) % 10 = 0 as is_machine
from range($events // 5) t(e);
create table activation.suppression as
select null::varchar as email, 'c' || (h(i, 17) % $customers) as customer_key, 'complained' as reason
from range($customers // 100) t(i);
"""


def generate(db: Path, customers: int, events: int) -> float:
    import duckdb

    start = time.perf_counter()
    con = duckdb.connect(str(db))
    sql = (GENERATE.replace("$as_of", f"timestamptz '{AS_OF.isoformat()}'")
           .replace("$customers", str(customers)).replace("$orders", str(customers * 2))
           .replace("$events", str(events)))
    con.execute(sql)
    con.close()
    return time.perf_counter() - start


def measure(db: str, memory_limit: str | None, payload_mode: str, record: str | None) -> None:
    """Child process: the part we time. Prints one JSON line; `record`: pickle the statements sent."""
    import pickle

    import duckdb

    from personalization_assets.audiences.membership import load_segments, run_segments
    from personalization_assets.marts.payloads import replace_payloads
    from personalization_assets.marts.payloads_sql import write_payloads
    from personalization_assets.marts.profiles import materialize_profiles
    from personalization_assets.warehouse import WarehouseConnection

    statements: list[tuple[str, str, list]] = []

    class Recording(WarehouseConnection):
        def query(self, sql, params=()):
            statements.append(("query", sql, list(params)))
            return super().query(sql, params)

        def execute(self, sql, params=()):
            statements.append(("execute", sql, list(params)))
            return super().execute(sql, params)

    conn = Recording(duckdb.connect(db), "duckdb")
    if memory_limit:  # DuckDB otherwise may use 80% of RAM as buffer pool before spilling
        conn.execute(f"set memory_limit = '{memory_limit}'")
    t0 = time.perf_counter()
    built = materialize_profiles(conn, AS_OF)
    t1 = t2 = time.perf_counter()  # written in place: no separate write
    run = run_segments(conn, load_segments(), AS_OF)
    t3 = time.perf_counter()
    if payload_mode == "sql":
        payloads = write_payloads(conn)
    else:
        payloads = replace_payloads(conn)
    t4 = time.perf_counter()
    if record:
        with open(record, "wb") as f:
            pickle.dump(statements, f)
    print(json.dumps({"profiles_s": t1 - t0, "write_s": t2 - t1, "segments_s": t3 - t2, "payloads_s": t4 - t3,
                      "profiles": built.rows, "payloads": payloads, "sizes": run.sizes, "clv": built.clv_fit}))


def plain(db: str, memory_limit: str | None, record: str) -> None:
    """Child process: replay the recorded statements with nothing but duckdb (no pandas)."""
    import pickle

    import duckdb

    with open(record, "rb") as f:
        statements = pickle.load(f)
    con = duckdb.connect(db)
    if memory_limit:
        con.execute(f"set memory_limit = '{memory_limit}'")
    start = time.perf_counter()
    for i, (kind, sql, params) in enumerate(statements):
        con.execute(f"create or replace temporary table _plain_{i} as {sql}" if kind == "query" else sql, params)
    print(json.dumps({"total_s": time.perf_counter() - start, "statements": len(statements)}))


WRAPPER = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]);u=resource.getrusage(resource.RUSAGE_CHILDREN);"
           "print(u.ru_utime+u.ru_stime,file=sys.stderr);print(u.ru_maxrss,file=sys.stderr);"
           "sys.exit(r.returncode if r.returncode >= 0 else 128 - r.returncode)")


def _child(*args: str) -> dict:
    """Run this module in a child with `args`; its JSON line plus its own peak RSS and wall time."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "bench.marts", *args],
                          capture_output=True, text=True)
    if proc.returncode:
        killed = f" (killed by signal {proc.returncode - 128}: out of memory?)" if proc.returncode > 128 else ""
        peak = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "?"
        print(f"measurement failed{killed}, exit {proc.returncode}, peak RSS {peak} KB "
              f"({' '.join(args)}):\n{proc.stderr[-4000:]}", flush=True)
        return {}
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["peak_mb"] = int(proc.stderr.strip().splitlines()[-1]) / 1024
    figures["cpu_s"] = float(proc.stderr.strip().splitlines()[-2])  # user + system, all threads
    figures["wall_s"] = time.perf_counter() - start
    return figures


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path, default=None, help="DuckDB file (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for the builds, e.g. 2GB")
    parser.add_argument("--skip-python-payloads", action="store_true",
                        help="leave out the build with the Python payload builder (the slow one)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--plain", help=argparse.SUPPRESS)
    parser.add_argument("--payloads", default="sql", help=argparse.SUPPRESS)
    parser.add_argument("--record", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure, args.memory_limit, args.payloads, args.record)
    if args.plain:
        return plain(args.plain, args.memory_limit, args.record)
    load_before = _load()
    workdir = tempfile.TemporaryDirectory(prefix="bench-marts-")
    db = args.db or Path(workdir.name) / "bench_warehouse.duckdb"  # not "marts": catalog would shadow the schema
    if db.exists():
        print(f"reusing {db}")
        gen_s = 0.0
    else:
        gen_s = generate(db, args.customers, args.events)
    from personalization_assets.resources.warehouse import duckdb_memory_limit

    args.memory_limit = duckdb_memory_limit(args.memory_limit)
    limit = ["--memory-limit", args.memory_limit]
    record = str(Path(workdir.name) / "statements.pickle")
    builds = {}
    if not args.skip_python_payloads:
        builds["python payloads"] = _child("--measure", str(db), "--payloads", "python", *limit)
    builds["sql payloads"] = _child("--measure", str(db), "--payloads", "sql", "--record", record, *limit)
    builds = {name: f for name, f in builds.items() if f}  # a failed build has said why
    if "sql payloads" not in builds:
        sys.exit("the sql payloads build failed: no statements to replay as the plain script")
    peer = _child("--plain", str(db), "--record", record, *limit)
    if not peer:
        sys.exit("the plain DuckDB script failed")
    print(f"data: {args.customers:,} customers, {args.customers * 2:,} orders, {args.events:,} events, "
          f"{args.events // 5:,} e-mail events (generated in {gen_s:.1f} s); "
          f"DuckDB memory_limit: {args.memory_limit}; load average before: {load_before}, after: {_load()}")
    print(f"{'build':<22} {'profiles':>9} {'write':>7} {'segments':>9} {'payloads':>9} {'total s':>8} "
          f"{'peak RSS MB':>12} {'x plain time':>13} {'CPU s':>7} {'x plain CPU':>12}")
    for name, f in builds.items():
        total = f["profiles_s"] + f["write_s"] + f["segments_s"] + f["payloads_s"]
        print(f"{name:<22} {f['profiles_s']:9.1f} {f['write_s']:7.1f} {f['segments_s']:9.1f} {f['payloads_s']:9.1f} "
              f"{total:8.1f} {f['peak_mb']:12.0f} {total / peer['total_s']:13.2f} {f['cpu_s']:7.1f} "
              f"{f['cpu_s'] / peer['cpu_s']:12.2f}")
    print(f"{'plain DuckDB script':<22} {'':>9} {'':>7} {'':>9} {'':>9} {peer['total_s']:8.1f} {peer['peak_mb']:12.0f} "
          f"{1:13.2f} {peer['cpu_s']:7.1f} {1:12.2f}  ({peer['statements']} statements replayed)")
    last = builds["sql payloads"]
    total = last["profiles_s"] + last["write_s"] + last["segments_s"] + last["payloads_s"]
    print(f"profiles {last['profiles']:,}, payloads {last['payloads']:,}; segment sizes: "
          + ", ".join(f"{k}={v:,}" for k, v in last["sizes"].items()))
    print(f"CLV fit: {json.dumps(last['clv'])}")
    print(f"issue 23 targets (sql payloads): peak RSS {last['peak_mb']:.0f} MB "
          f"{'<' if last['peak_mb'] < 2048 else '>='} 2 GB; time x{total / peer['total_s']:.2f} of the plain script "
          f"({'<=' if total <= 2 * peer['total_s'] else '>'} 2x)")
    verdict = "within" if total < CADENCE_SECONDS else "OVER"
    print(f"vs fastest refresh cadence (cart_abandoners, {CADENCE_SECONDS // 60} min): {verdict} "
          f"({total / CADENCE_SECONDS:.1%} of it)")
    if args.keep and not args.db:
        kept = Path(tempfile.gettempdir()) / "bench_warehouse.duckdb"
        db.replace(kept)
        print(f"kept {kept}")
    workdir.cleanup()


if __name__ == "__main__":
    main()
