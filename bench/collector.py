"""Collector throughput and latency per bus, beside the raw append rate of the same bus.

    python -m bench.collector [--duration 10] [--clients 16 64] [--workers 1 2] [--buses sqlite redis]
                              [--prefill 0] [--freshness 25]

For each bus: (1) the raw append rate, bus.append() of 100- and 1000-event batches from one
thread, fsync on; (2) the collector as a subprocess (uvicorn, N workers) on a bus of that kind, loaded
by a separate client process with many keep-alive connections posting /v1/batch with 100 events
each; events/s counts only 200-acknowledged events, and the bus count is checked afterwards.
Every figure gets a new bus (--prefill N fills it with N events first). Each client waits for its answer before sending again (as the Segment and Rudder clients do), so
with few clients the rate is bounded by clients x 100 / latency, not by the server: the run is
repeated with more clients until the collector's cores are busy, and the best rate is its capacity.
Then (3) sensor-path freshness, bench/freshness.py: collector 200 -> row in staging.events through
`dagster-daemon`, with the project's dagster.yaml and with direct run launch.
Targets (issue 7): >= 20,000 events/s on the embedded bus, and >= half its raw append rate;
freshness p95 under 15 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import orjson

KEY = "bench-key"
BATCH = 100


def event(prefix: str, i: int) -> dict:
    return {"type": "track", "event": "Product Viewed", "userId": f"user-{i % 5000}",
            "anonymousId": f"anon-{i % 7919}", "messageId": f"{prefix}-{i}",
            "timestamp": "2026-11-28T10:00:00.000Z",
            "properties": {"sku": f"SKU-{i % 400}", "category": "shoes", "price": 59.9, "currency": "EUR",
                           "url": f"https://shop.example/p/{i % 400}"},
            "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "ip": "10.0.0.1",
                        "userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "locale": "de-DE"}}


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] if s else float("nan")


# --- raw append rate -------------------------------------------------------------------------
def raw_append_rate(bus_url: str, batch: int, seconds: float = 3.0) -> float:
    from personalization_assets.bus import open_bus

    bus = open_bus(bus_url)
    n, spent = 0, 0.0
    while spent < seconds:  # only the append is timed; events carry random uuid4 messageIds
        events = [event(uuid.uuid4().hex, k) for k in range(batch)]
        t0 = time.perf_counter()
        bus.append(events)
        spent += time.perf_counter() - t0
        n += batch
    rate = n / spent
    bus.close()
    return rate


# --- load client (runs in its own process: --client) ----------------------------------------
async def _client_main(port: int, duration: float, clients: int, prefix: str) -> dict:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    counter = iter(range(10**9))
    head = (f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\n").encode()
    deadline = time.perf_counter() + duration
    # One body template; each request fills in 100 fresh random messageIds (uuid4-like, as the
    # Segment and Rudder clients send), so the client costs little and leaves the cores to the
    # collector, while the bus sees the random keys it sees in production.
    template = orjson.dumps({"batch": [event("ID", k) for k in range(BATCH)],
                             "sentAt": "2026-11-28T10:00:01.000Z"}).replace(b"%", b"%%")
    template = template.replace(b'"messageId":"ID-', b'"messageId":"%s-')

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            next(counter)
            rnd = os.urandom(16 * BATCH).hex().encode()
            body = template % tuple(rnd[i:i + 32] for i in range(0, 32 * BATCH, 32))
            t0 = time.perf_counter()
            writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status_head = await reader.readuntil(b"\r\n\r\n")
            status = int(status_head.split(b" ", 2)[1])
            length = 0
            for line in status_head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            codes[status] = codes.get(status, 0) + 1
            if status == 429:
                await asyncio.sleep(0.05)
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return {"elapsed": time.perf_counter() - t0, "codes": codes, "latencies": latencies}


def run_load(port: int, duration: float, clients: int) -> dict:
    prefix = uuid.uuid4().hex[:8]
    out = subprocess.run([sys.executable, __file__, "--client", str(port), str(duration), str(clients), prefix],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# --- collector subprocess --------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collector(bus_url: str, workers: int) -> tuple[subprocess.Popen, int]:
    import requests

    port, admin_port = free_port(), free_port()
    code = ("import sys; from personalization_assets.collector import run_collector; "
            "run_collector('127.0.0.1', int(sys.argv[1]), sys.argv[2], [sys.argv[3]], workers=int(sys.argv[4]),"
            " admin_port=int(sys.argv[5]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), bus_url, KEY, str(workers), str(admin_port)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:  # /health is on the admin port only
            if requests.get(f"http://127.0.0.1:{admin_port}/health", timeout=0.5).status_code == 200:
                time.sleep(0.5 if workers > 1 else 0)  # let every worker come up
                return proc, port
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    sys.exit("collector did not start")


def tree_cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process and its direct children (the uvicorn workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            pids += [int(c) for c in f.read().split()]
    total = 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except FileNotFoundError:
            pass
    return total


def bench_collector(bus_url: str, workers: int, duration: float, clients: int) -> dict:
    from personalization_assets.bus import open_bus

    before = open_bus(bus_url).count()
    proc, port = start_collector(bus_url, workers)
    try:
        cpu0 = tree_cpu_s(proc.pid)
        res = run_load(port, duration, clients)
        cpu = tree_cpu_s(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(30)
    ok = res["codes"].get("200", 0)
    stored = open_bus(bus_url).count() - before
    return {"eps": ok * BATCH / res["elapsed"], "p50": percentile(res["latencies"], 50) * 1000,
            "p99": percentile(res["latencies"], 99) * 1000, "codes": res["codes"],
            "acked": ok * BATCH, "stored": stored,
            "cpu_us_per_event": cpu * 1e6 / max(1, ok * BATCH), "cores": cpu / res["elapsed"]}


def fresh_bus(name: str, tmp: str, prefill: int = 0) -> str:
    """A new bus for one measurement, so every figure starts from the same state (an embedded bus
    slows down as its dedup index grows), holding `prefill` events already (a steady state)."""
    tag = uuid.uuid4().hex[:8]
    if name == "sqlite":
        url = f"sqlite:///{tmp}/events-{tag}.db"
    else:
        from personalization_assets.bus.redis_bus import RedisBus  # noqa: F401  (fails early if absent)

        url = f"redis://127.0.0.1:6379/0?stream=bench-{tag}"
    if prefill:
        from personalization_assets.bus import open_bus

        bus = open_bus(url)
        for start in range(0, prefill, 5000):  # random ids, as clients send: spread over the whole index
            bus.append([event(uuid.uuid4().hex, k) for k in range(min(5000, prefill - start))])
        bus.close()
    return url


def drop_bus(url: str) -> None:
    from personalization_assets.bus import open_bus

    if url.startswith("redis"):
        open_bus(url).drop()
    else:
        path = url.removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm", ".lock"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64],
                        help="concurrent keep-alive connections; one run per value")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--buses", nargs="+", default=["sqlite", "redis"])
    parser.add_argument("--prefill", type=int, default=0,
                        help="events stored in each new bus before it is measured (steady state: the dedup "
                             "index of a busy 24 h window is large)")
    parser.add_argument("--freshness", type=int, default=25,
                        help="sample batches for the sensor-path freshness runs (bench/freshness.py); 0 skips")
    args = parser.parse_args()
    from personalization_assets.bus import open_bus

    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"cores: {os.cpu_count()}  batch: {BATCH} events  duration: {args.duration}s")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.buses:
            raw = {}
            for batch in (100, 1000):
                url = fresh_bus(name, tmp, args.prefill)
                raw[batch] = raw_append_rate(url, batch)
                durability = getattr(open_bus(url), "durability", lambda: "synchronous=FULL (fsync per commit)")()
                drop_bus(url)
            state = f"holding {args.prefill:,} events before each run" if args.prefill else "empty"
            print(f"\n[{name}] durability: {durability}; each figure on a new bus, {state}")
            print(f"  raw append rate: {raw[100]:>9,.0f} ev/s (100/append)  {raw[1000]:>9,.0f} ev/s (1000/append)")
            limit = max(raw.values())
            best = 0.0
            for w in args.workers:
                for clients in args.clients:
                    url = fresh_bus(name, tmp, args.prefill)
                    r = bench_collector(url, w, args.duration, clients)
                    drop_bus(url)
                    best = max(best, r["eps"])
                    print(f"  collector, {w} worker(s), {clients:>3} clients: {r['eps']:>9,.0f} ev/s acknowledged = "
                          f"{r['eps'] / limit:.0%} of raw  p50 {r['p50']:.1f} ms  p99 {r['p99']:.1f} ms  "
                          f"codes {r['codes']}  acked {r['acked']} stored {r['stored']}  "
                          f"collector {r['cores']:.2f} cores, {r['cpu_us_per_event']:.0f} us CPU/event")
            verdict = "OK" if best >= limit / 2 and (name != "sqlite" or best >= 20_000) else "BELOW TARGET"
            print(f"  capacity (best run): {best:,.0f} ev/s = {best / limit:.0%} of the raw append rate  [{verdict}]")
    if args.freshness:
        from bench.freshness import run_freshness

        for coordinator in ("project", "direct"):
            run_freshness(args.freshness, coordinator)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, duration, clients, prefix = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        print(json.dumps(asyncio.run(_client_main(port, duration, clients, prefix))))
    else:
        main()
