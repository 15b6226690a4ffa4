"""Benchmark: sync 1M segment members to a signed webhook on 127.0.0.1, then 1% changes.

    flock /tmp/bench.lock python -m bench.sync [--members 1000000] [--changed 0.01] [--batch 5000]

Synthetic profiles and one segment go straight into a temporary DuckDB file with SQL. The
receiver runs in its own process (verifies the HMAC signature, parses every batch, counts rows
and distinct idempotency keys). Three syncs in mirror mode: the first full sync, an incremental
sync after changing `--changed` of the members (half renamed, a quarter leaving, a quarter
joining), and one with nothing changed. Prints rows sent (counted by the receiver) and time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import requests

from personalization_assets.activation.destinations import SignedWebhook
from personalization_assets.activation.destinations.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from personalization_assets.activation.engine import SyncSpec, run_sync
from personalization_assets.activation.http import HttpTransport
from personalization_assets.activation.model import MIRROR
from personalization_assets.activation.ratelimit import TokenBucket
from personalization_assets.activation.sources import segment_members_sql
from personalization_assets.warehouse import WarehouseConnection

SECRET = "bench-secret"
GENERATE = """
create schema marts;
create table marts.customer_profiles as
select 'c' || i as customer_key, 'user' || i || '@example.com' as email, 'Name' || (i % 997) as first_name,
       ['en-GB', 'de-DE', 'en-US', 'ja-JP'][1 + i % 4] as locale, ['GB', 'DE', 'US', 'JP'][1 + i % 4] as country,
       ['Europe/London', 'Europe/Berlin', 'America/New_York', 'Asia/Tokyo'][1 + i % 4] as timezone,
       'loyal' as rfm_segment, 9 as preferred_send_hour
from range({total}) t(i);
create table marts.segment_membership as
select 'all_members' as segment, 'c' || i as customer_key, now() as since from range({members}) t(i);
"""


def receiver(port_queue) -> None:
    rows, keys = [0], set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if not verify(SECRET, self.headers[TIMESTAMP_HEADER], body, self.headers[SIGNATURE_HEADER]):
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            batch = json.loads(body)["rows"]
            rows[0] += len(batch)
            keys.update(r["idempotency_key"] for r in batch)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            data = json.dumps({"rows": rows[0], "distinct_keys": len(keys)}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_queue.put(server.server_port)
    server.serve_forever()


def change(conn, members: int, fraction: float) -> int:
    """Rename half of the changed share, drop a quarter from the segment, add a quarter."""
    n = int(members * fraction)
    renamed, left, joined = n // 2, n // 4, n - n // 2 - n // 4
    conn.execute(f"update marts.customer_profiles set first_name = first_name || 'x' "
                 f"where cast(substr(customer_key, 2) as bigint) < {renamed}")
    conn.execute(f"delete from marts.segment_membership where cast(substr(customer_key, 2) as bigint) "
                 f"between {renamed} and {renamed + left - 1}")
    conn.execute(f"insert into marts.segment_membership select 'all_members', 'c' || i, now() "
                 f"from range({members}, {members + joined}) t(i)")
    return renamed + left + joined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()

    ports = multiprocessing.Queue()
    peer = multiprocessing.Process(target=receiver, args=(ports,), daemon=True)
    peer.start()
    url = f"http://127.0.0.1:{ports.get(timeout=10)}"
    stats = lambda: requests.get(url, timeout=10).json()  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        raw = duckdb.connect(str(Path(tmp) / "warehouse.duckdb"))
        conn = WarehouseConnection(raw, "duckdb")
        started = time.perf_counter()
        raw.execute(GENERATE.format(total=args.members * 2, members=args.members))
        print(f"generated {args.members:,} members in {time.perf_counter() - started:.1f} s")
        hook = SignedWebhook(url, SECRET, HttpTransport(TokenBucket(rate=10_000, burst=100)), batch_size=args.batch)
        spec = SyncSpec(hook, "all_members", MIRROR, segment_members_sql(conn))
        print(f"{'sync':<14}{'planned':>10}{'rows sent':>12}{'batches':>9}{'seconds':>9}{'rows/s':>10}")
        for label, prepare in (("full", None), ("incremental", lambda: change(conn, args.members, args.changed)),
                               ("unchanged", None)):
            expected = prepare() if prepare else None
            before = stats()["rows"]
            report = run_sync(conn, spec)
            sent = stats()["rows"] - before
            planned = sum(report.planned.values())
            print(f"{label:<14}{planned:>10,}{sent:>12,}{report.batches:>9}{report.seconds:>9.1f}"
                  f"{sent / report.seconds if report.seconds else 0:>10,.0f}"
                  + (f"   (changed members: {expected:,}; counts {report.counts()})" if expected else ""))
        final = stats()
        print(f"receiver: {final['rows']:,} rows, {final['distinct_keys']:,} distinct idempotency keys")
        raw.close()
    peer.terminate()


if __name__ == "__main__":
    main()
