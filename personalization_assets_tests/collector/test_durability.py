"""kill -9 the collector process mid-stream: every event that got a 200 is in the bus."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import orjson
import requests

from personalization_assets.bus import open_bus

from .conftest import WRITE_KEY, free_port

_SERVE = "import sys; from personalization_assets.collector import run_collector; " \
         "run_collector('127.0.0.1', int(sys.argv[1]), sys.argv[2], [sys.argv[3]], admin_port=int(sys.argv[4]))"


def _start(port: int, bus_url: str) -> subprocess.Popen:
    admin_port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(port), bus_url, WRITE_KEY, str(admin_port)])
    deadline = time.monotonic() + 60  # a loaded 2-core machine starts it in 2-20 s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{admin_port}/health", timeout=2).status_code == 200:
                return proc
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still starting up
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("collector subprocess did not become healthy within 60 s")


def _sender(url: str, worker: int, acked: list, sent: list, stop: threading.Event) -> None:
    session = requests.Session()
    for b in range(10_000):
        if stop.is_set():
            return
        ids = [f"w{worker}-b{b}-e{i}" for i in range(50)]
        body = orjson.dumps({"batch": [{"type": "track", "event": "Load", "userId": f"u{worker}",
                                        "messageId": m} for m in ids]})
        sent.append(ids)
        try:
            r = session.post(f"{url}/v1/batch", data=body, timeout=5,
                             headers={"Authorization": f"Bearer {WRITE_KEY}"})
        except requests.RequestException:
            return  # the server died mid-request: this batch is not acknowledged
        if r.status_code == 200:
            acked.extend(ids)


def test_kill_9_mid_stream_loses_no_acknowledged_event(tmp_path, closing):
    bus_url = f"sqlite:///{tmp_path}/events.db"
    port = free_port()
    proc = _start(port, bus_url)
    acked: list[str] = []
    sent: list[list[str]] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_sender, args=(f"http://127.0.0.1:{port}", w, acked, sent, stop))
               for w in range(4)]
    for t in threads:
        t.start()
    while len(acked) < 5_000:  # well into the stream
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    acked_at_kill = set(acked)

    proc = _start(port, bus_url)  # restart on the same file: recovery from the WAL
    try:
        stored = [r.message_id for r in closing(open_bus(bus_url)).read(0, limit=10_000_000)]
        assert len(stored) == len(set(stored)), "an event was stored twice"
        missing = acked_at_kill - set(stored)
        assert not missing, f"{len(missing)} of {len(acked_at_kill)} acknowledged events were lost"
        # clients retry what was not acknowledged: afterwards every sent event is there exactly once
        unacked = [ids for ids in sent if not set(ids) <= acked_at_kill]
        for ids in unacked:
            body = orjson.dumps({"batch": [{"type": "track", "event": "Load", "userId": "u",
                                            "messageId": m} for m in ids]})
            r = requests.post(f"http://127.0.0.1:{port}/v1/batch", data=body, timeout=10,
                              headers={"Authorization": f"Bearer {WRITE_KEY}"})
            assert r.status_code == 200
        final = [r.message_id for r in closing(open_bus(bus_url)).read(0, limit=10_000_000)]
        assert sorted(final) == sorted(m for ids in sent for m in ids)
        print(f"acked at kill: {len(acked_at_kill)}, stored at restart: {len(stored)}, "
              f"in flight at kill: {len(stored) - len(acked_at_kill)}")
    finally:
        proc.kill()
        proc.wait(10)
