"""`personalization audience preview FILE.yaml` at a million customers, against its 2 s target.

    python -m bench.audiences_preview [--customers 1000000] [--events 10000000] [--repeat 3] [--keep DIR]

`--keep DIR` builds the warehouse in DIR and reuses it on the next run.

Builds a synthetic warehouse in a temporary DuckDB file (DuckDB's own generator, seeded):
`marts.customer_profiles` with every profile trait, `staging.events` (views, adds, checkouts,
orders over 30 days, 20 categories, amounts on orders) and `core.identity_map`. Then runs the
command itself, in-process, on a definition in the issue's shape ("viewed shoes at least 3 times in
the last 7 days and has not ordered"), and on each packaged audience, and prints the wall time of
each (best of --repeat) next to the 2 s target (issue 22). No dataset is read: it is all generated.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb

TARGET_S = 2.0
EXAMPLE = """
name: shoe_browsers
description: viewed shoes at least 3 times in the last 7 days and has not ordered
refresh: "0 * * * *"
rule:
  all:
    - {event: product viewed, where: {category: cat0}, count: ">= 3", within: 7d}
    - {event: order completed, exists: false, within: 7d}
"""


def generate(path: Path, customers: int, events: int, now: datetime) -> float:
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    con.execute("select setseed(0.42)")
    con.execute("create schema marts; create schema staging; create schema core")
    con.execute("set TimeZone = 'UTC'")
    con.execute("""
        create table marts.customer_profiles as
        select 'c' || i as customer_key,
               case when random() < 0.6 then ?::timestamptz - to_seconds(cast(random() * 3e7 as bigint)) end as last_order_at,
               ?::timestamptz - to_seconds(cast(random() * 8e7 as bigint)) as first_order_at,
               case when random() < 0.3 then ?::timestamptz - to_seconds(cast(random() * 6e5 as bigint)) end as last_carted_at,
               case when random() < 0.5 then ?::timestamptz - to_seconds(cast(random() * 6e5 as bigint)) end as last_viewed_at,
               ?::timestamptz - to_seconds(cast(random() * 3e6 as bigint)) as last_engaged_at,
               ?::timestamptz - to_seconds(cast(random() * 1e8 as bigint)) as customer_created_at,
               cast(floor(random() * 6) as bigint) as orders_count,
               cast(random() * 200000 as bigint) as historical_value_minor,
               cast(random() * 80000 as bigint) as predicted_value_minor,
               cast(random() * 20000 as bigint) as aov_minor, random() * 700 as recency_days,
               random() as p_alive, 1 + cast(floor(random() * 5) as bigint) as r_score,
               1 + cast(floor(random() * 5) as bigint) as f_score, 1 + cast(floor(random() * 5) as bigint) as m_score,
               cast(random() * 30 as bigint) as email_opens, cast(random() * 10 as bigint) as email_clicks,
               'segment' || cast(floor(random() * 8) as bigint) as rfm_segment, 'DE' as country, 'de-DE' as locale,
               'cat' || cast(floor(random() * 20) as bigint) as top_category_1, random() < 0.8 as email_opt_in
        from range(?) t(i)""", [now] * 6 + [customers])
    con.execute("""
        create table staging.events as
        select 'm' || i as message_id, 'c' || k as user_id, 'a' || k as anonymous_id,
               case when r < 0.7 then 'product viewed' when r < 0.9 then 'product added'
                    when r < 0.95 then 'checkout started' else 'order completed' end as event,
               ts as "timestamp", ts + to_seconds(cast(random() * 60 as bigint)) as received_at,
               'cat' || cast(floor(random() * 20) as bigint) as category, 'sku' || (i % 500) as sku, 'EUR' as currency,
               null::varchar as cart_id, null::varchar as checkout_id, null::varchar as order_id,
               case when r >= 0.95 then cast(1000 + random() * 29000 as bigint) end as value_minor
        from (select i, cast(floor(random() * ?) as bigint) as k, random() as r,
                     ?::timestamptz - to_seconds(cast(random() * 30 * 86400 as bigint)) as ts from range(?) t(i))
        order by received_at  -- as the stream appends it""",
                [customers, now, events])
    con.execute("""
        create table core.identity_map as
        select 'user_id' as identity_type, 'c' || i as identity, 'c' || i as customer_key from range(?) t(i)
        union all select 'anonymous_id', 'a' || i, 'c' || i from range(?) t(i)""", [customers, customers])
    con.execute("checkpoint")
    con.close()
    return time.perf_counter() - started


def refresh_all(db: Path, now: datetime) -> None:
    """What the audience assets hold after their refresh: audiences.<name>, read for the overlaps."""
    from personalization_assets.audiences.model import load_builtin
    from personalization_assets.audiences.preview import store_membership
    from personalization_assets.resources.warehouse import DuckDBWarehouse

    audiences = load_builtin()
    known = {a.name: a for a in audiences}
    with DuckDBWarehouse(database=str(db)).connect() as conn:
        for audience in audiences:
            started, cpu = time.perf_counter(), time.process_time()
            size = store_membership(conn, audience, known, now)
            print(f"refresh  {audience.name:<30} {time.perf_counter() - started:6.2f} s wall "
                  f"{time.process_time() - cpu:6.2f} s cpu  ({size:,} members; the asset's work, not timed by the target)")


def run_cli(definition: Path) -> tuple[tuple[float, float], str]:
    from personalization_assets.cli import main

    out = io.StringIO()
    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out):
        code = main(["audience", "preview", str(definition)])
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    if code != 0:
        raise SystemExit(f"preview of {definition} failed with exit code {code}")
    return elapsed, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per definition; the best is reported")
    parser.add_argument("--keep", help="build the warehouse in this directory and keep it (default: a temp dir)")
    args = parser.parse_args()

    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.keep or tmp)
        data.mkdir(parents=True, exist_ok=True)
        db = data / "warehouse.duckdb"
        if args.keep and db.exists():  # reuse a kept warehouse (its "now" is when it was built)
            print(f"warehouse: reusing {db}")
        else:
            built = generate(db, args.customers, args.events, now)
            print(f"warehouse: {args.customers:,} customers, {args.events:,} events, built in {built:.1f} s")
        os.environ["PERSONALIZATION_DATA_DIR"] = str(data)
        os.environ.pop("PERSONALIZATION_DUCKDB_PATH", None)

        refresh_all(db, now)
        example = data / "shoe_browsers.yaml"
        example.write_text(EXAMPLE)
        files = {"shoe_browsers (issue example)": example, **packaged()}
        worst = 0.0
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall time counts waiting for a core; "
              "cpu time is all threads' work)")
        for label, path in files.items():
            times, out = [], ""
            for _ in range(args.repeat):
                elapsed, out = run_cli(path)
                times.append(elapsed)
            best, cpu = min(times)
            worst = max(worst, best)
            print(f"preview  {label:<30} {best:6.2f} s wall {cpu:6.2f} s cpu  load {os.getloadavg()[0]:4.1f}  "
                  f"(target < {TARGET_S:.0f} s: {'ok' if best < TARGET_S else 'MISSED'})  {out.splitlines()[0]}")
        print(f"slowest preview: {worst:.2f} s wall against the {TARGET_S:.0f} s target: "
              f"{'ok' if worst < TARGET_S else 'MISSED'}")
        print("on an idle machine a preview's wall time is at most about its cpu time (DuckDB runs on up to "
              f"{os.cpu_count()} threads; the cpu time adds theirs up); under load the wall time also counts "
              "the waits for a core")


def packaged() -> dict[str, Path]:
    """The packaged definitions' files (the command reads a file)."""
    from importlib import resources

    folder = resources.files("personalization_assets.audiences") / "definitions"
    from personalization_assets.audiences.model import load_builtin

    return {a.name: Path(str(folder / f"{a.name}.yaml")) for a in load_builtin()}


if __name__ == "__main__":
    main()
