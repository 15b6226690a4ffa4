"""Benchmark: build customer profiles and every segment for 1M customers and 10M events.

    python bench/marts.py [--customers 1000000] [--events 10000000] [--db PATH] [--keep]

Synthetic data are generated straight into a DuckDB file with SQL (seeded hashes, so every run
sees the same data). The measured part runs in a fresh child process so its peak RSS is not
inflated by the generator; the parent prints wall time per stage and the child's peak memory,
and compares the total with the fastest segment refresh cadence (cart abandoners, 15 min).
"""

from __future__ import annotations

import argparse
import json
import resource
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
       'cart' || (h(e, 8) % $customers) || '-' || (h(e, 10) % 3) as cart_id,
       'SKU' || (h(e, 11) % 5000) as sku, null::varchar as category, 'GBP' as currency,
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


def measure(db: str, memory_limit: str | None) -> None:
    """Child process: the part we time. Prints one JSON line."""
    import duckdb

    from personalization_assets.marts.profiles import build_profiles, write_profiles
    from personalization_assets.resources.warehouse import WarehouseConnection
    from personalization_assets.audiences.membership import load_segments, run_segments

    conn = WarehouseConnection(duckdb.connect(db), "duckdb")
    if memory_limit:  # DuckDB otherwise may use 80% of RAM as buffer pool before spilling
        conn.execute(f"set memory_limit = '{memory_limit}'")
    t0 = time.perf_counter()
    built = build_profiles(conn, AS_OF)
    t1 = time.perf_counter()
    write_profiles(conn, built.frame)
    t2 = time.perf_counter()
    run = run_segments(conn, load_segments(), AS_OF)
    t3 = time.perf_counter()
    print(json.dumps({"profiles_s": t1 - t0, "write_s": t2 - t1, "segments_s": t3 - t2,
                      "profiles": len(built.frame), "sizes": run.sizes, "clv": built.clv_fit}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path, default=None, help="DuckDB file (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for the build, e.g. 2GB")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure, args.memory_limit)
    workdir = tempfile.TemporaryDirectory(prefix="bench-marts-")
    db = args.db or Path(workdir.name) / "bench_warehouse.duckdb"  # not "marts": catalog would shadow the schema
    if db.exists():
        print(f"reusing {db}")
        gen_s = 0.0
    else:
        gen_s = generate(db, args.customers, args.events)
    start = time.perf_counter()
    child = subprocess.run([sys.executable, __file__, "--measure", str(db)]
                           + (["--memory-limit", args.memory_limit] if args.memory_limit else []), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if child.returncode:
        sys.exit(f"measurement failed:\n{child.stderr}")
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    build = figures["profiles_s"] + figures["write_s"] + figures["segments_s"]
    print(f"data: {args.customers:,} customers, {args.customers * 2:,} orders, {args.events:,} events, "
          f"{args.events // 5:,} e-mail events (generated in {gen_s:.1f} s)")
    print(f"profiles (warehouse SQL + RFM + CLV): {figures['profiles_s']:8.1f} s  ({figures['profiles']:,} rows)")
    print(f"write marts.customer_profiles:        {figures['write_s']:8.1f} s")
    print(f"all {len(figures['sizes'])} segments + changes:           {figures['segments_s']:8.1f} s")
    print(f"total build:                          {build:8.1f} s  (child process wall {wall:.1f} s)")
    print(f"peak RSS of the build process:        {peak_mb:8.0f} MB"
          f"  (DuckDB memory_limit: {args.memory_limit or 'default, 80% of RAM'})")
    print("segment sizes: " + ", ".join(f"{k}={v:,}" for k, v in figures["sizes"].items()))
    print(f"CLV fit: {json.dumps(figures['clv'])}")
    verdict = "within" if build < CADENCE_SECONDS else "OVER"
    print(f"vs fastest refresh cadence (cart_abandoners, {CADENCE_SECONDS // 60} min): {verdict} "
          f"({build / CADENCE_SECONDS:.1%} of it)")
    if args.keep and not args.db:
        kept = Path(tempfile.gettempdir()) / "bench_warehouse.duckdb"
        db.replace(kept)
        print(f"kept {kept}")
    workdir.cleanup()


if __name__ == "__main__":
    main()
