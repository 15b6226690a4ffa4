"""Benchmark: the sender's copy of the payloads, refreshed from a DuckDB warehouse of N payloads.

    python -m bench.payload_copy [--payloads 1000000]

Synthetic payloads (~460 bytes of JSON each, three recommendations) and their tracked userIds go
into a temporary DuckDB file with SQL. Each way of copying them runs in its own process, twice
(a first copy, then a refresh of the same rows), and reports its time and peak RSS (VmHWM):
- `refresh_from_duckdb`, as the sender runs it (`delivery/payloads.py`: the rows streamed 10k at a
  time into one SQLite transaction);
- the peer: the same query read as one pandas frame, ordered by userId, its rows made a list and
  upserted by `PayloadStore.sync` (what the sender did before 2f934b6).
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

ROOT = Path(__file__).resolve().parents[1]
GENERATE = """
create schema core; create schema marts;
create table core.identity_map as
select 'user_id' as identity_type, 'u' || i as identity, 'cus_' || i as customer_key from range({n}) t(i);
create table marts.personalization_payloads as
select 'cus_' || i as customer_key, 'person' || i || '@example.com' as email,
  '{{"first_name": "Name' || i || '", "greeting": "Hi Name' || i || '", "segment": "loyal", "recommendations": ['
  || '{{"sku": "SKU-' || (i % 997) || '", "name": "Product ' || (i % 997) || '", "price": "19.99", '
  || '"url": "https://shop.example.com/p/' || (i % 997) || '"}},'
  || '{{"sku": "SKU-' || (i % 991) || '", "name": "Product ' || (i % 991) || '", "price": "29.99", '
  || '"url": "https://shop.example.com/p/' || (i % 991) || '"}},'
  || '{{"sku": "SKU-' || (i % 983) || '", "name": "Product ' || (i % 983) || '", "price": "9.99", '
  || '"url": "https://shop.example.com/p/' || (i % 983) || '"}}],'
  || '"discount_code": "WB' || i || '", "last_viewed": "Product ' || (i % 977) || '"}}' as payload
from range({n}) t(i);
"""


def _hwm_mb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


def _one_frame(warehouse: str, store) -> int:
    """The peer: the whole result as one ordered frame, then a list of its rows."""
    from personalization_assets.delivery.payloads import SELECT

    con = duckdb.connect(warehouse, read_only=True)
    try:
        frame = con.execute(SELECT + " order by customer_id").df()
    finally:
        con.close()
    rows = [(str(r.customer_id), str(r.customer_key), str(r.email), str(r.payload)) for r in frame.itertuples()]
    return store.sync(rows)


def _worker(way: str, warehouse: str, store_path: str) -> None:
    import pandas  # noqa: F401  (both ways import it: the same baseline)

    from personalization_assets.delivery.payloads import PayloadStore, refresh_from_duckdb

    store = PayloadStore(store_path)
    copy = (lambda: refresh_from_duckdb(warehouse, store)) if way == "streamed" else (lambda: _one_frame(warehouse, store))
    base, laps = _hwm_mb(), []
    for _ in range(2):
        t0 = time.perf_counter()
        rows = copy()
        laps.append(round(time.perf_counter() - t0, 2))
    print(json.dumps({"rows": rows, "seconds": laps, "peak_mb": _hwm_mb(), "start_mb": base}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--payloads", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-payload-copy-") as tmp:
        warehouse = str(Path(tmp) / "w.duckdb")
        con = duckdb.connect(warehouse)
        con.execute(GENERATE.format(n=int(args.payloads)))
        size = con.execute("select avg(length(payload)) from marts.personalization_payloads").fetchone()[0]
        con.close()
        print(f"{args.payloads:,} payloads of {size:.0f} bytes on average; each way in its own process, twice")
        for way in ("streamed", "one frame (peer)"):
            proc = subprocess.run([sys.executable, "-m", "bench.payload_copy", "--worker", way.split()[0], warehouse,
                                   str(Path(tmp) / f"{way.split()[0]}.sqlite")],
                                  cwd=ROOT, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{way}: failed\n{proc.stderr[-2000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  {way:<18} {r['rows']:>10,} rows  first {r['seconds'][0]:6.2f} s  again {r['seconds'][1]:6.2f} s  "
                  f"peak RSS {r['peak_mb']:6,} MB (at start {r['start_mb']} MB)")


if __name__ == "__main__":
    main()
