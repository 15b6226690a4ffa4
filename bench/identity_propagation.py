"""Benchmark: carrying identity merges to a destination before its sync.

    python -m bench.identity_propagation [--records 1000000] [--merged 0.01]

A crosswalk of `--records` records, every key held by the destination in one segment, and
`--merged` of the records merged into their neighbour's key, in an in-memory DuckDB. Times the
warehouse side only (the destination acknowledges at once): tracing the held keys through the
crosswalk, applying the changes (state moves and log), and the re-run that finds nothing.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from datetime import datetime, timezone

import duckdb

from personalization_assets.activation import tables
from personalization_assets.activation.identity_changes import apply_changes, pending_changes
from personalization_assets.warehouse import WarehouseConnection


class Acknowledging:
    name = "webhook"

    def merge_profiles(self, changes):
        pass

    def unmerge_profiles(self, changes):
        pass

    def delete(self, emails, customer_keys):
        pass


def build(records: int, merged: float) -> WarehouseConnection:
    raw = duckdb.connect(":memory:")
    conn = WarehouseConnection(raw, "duckdb")
    tables.prepare(conn, "sync_state", "identity_changes")
    raw.execute("create schema core")
    every = max(1, round(1 / merged))
    raw.execute(f"""create table core.customer_crosswalk as
select 'rec:' || i as record_id,
       'cus_' || substr(sha1(case when i % {every} = 0 then 'rec:' || (i + 1) else 'rec:' || i end), 1, 16) as customer_key,
       'cus_' || substr(sha1('rec:' || i), 1, 16) as previous_customer_key
from range({records}) t(i)""")
    raw.execute(f"""insert into activation.sync_state
select 'webhook', 'vip', k, k, k || '@example.com', 'h', 1, true, now()
from (select 'cus_' || substr(sha1('rec:' || i), 1, 16) as k from range({records}) t(i))""")
    return conn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--merged", type=float, default=0.01)
    args = parser.parse_args()
    conn = build(args.records, args.merged)
    tracemalloc.start()
    clock = time.perf_counter()
    changes = pending_changes(conn, "webhook")
    traced = time.perf_counter() - clock
    clock = time.perf_counter()
    counts = apply_changes(conn, Acknowledging(), changes, datetime.now(timezone.utc))
    applied = time.perf_counter() - clock
    clock = time.perf_counter()
    again = pending_changes(conn, "webhook")
    rerun = time.perf_counter() - clock
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    print(f"records {args.records:,}  held keys {args.records:,}  changes {len(changes):,} ({counts})")
    print(f"trace {traced:.2f} s  apply {applied:.2f} s  re-run {rerun:.2f} s finds {len(again)}  "
          f"python peak {peak:.0f} MiB")


if __name__ == "__main__":
    main()
