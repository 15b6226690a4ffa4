"""Several collector workers: connections spread over them, a dead worker is replaced, and a
SIGTERM stops them all without losing an acknowledged event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
import requests

from personalization_assets.bus import open_bus

from .conftest import WRITE_KEY, free_port

_SERVE = ("import sys; from personalization_assets.collector import run_collector; "
          "run_collector('127.0.0.1', int(sys.argv[1]), sys.argv[2], [sys.argv[3]], workers=2, "
          "admin_port=int(sys.argv[4]))")


def _pids(url: str, connections: int) -> set[int]:
    """Worker pids that answer /health on `connections` new keep-alive connections (to the admin
    port, which each worker binds with SO_REUSEPORT exactly as it binds the public one)."""
    pids = set()
    for _ in range(connections):
        with requests.Session() as s:
            try:
                pids.add(s.get(f"{url}/health", timeout=2).json()["worker_pid"])
            except requests.ConnectionError:
                pass
    return pids


def _wait(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met within the timeout")


def test_workers_share_connections_restart_and_drain(tmp_path, closing):
    bus_url, port, admin_port = f"sqlite:///{tmp_path}/events.db", free_port(), free_port()
    url, admin_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(port), bus_url, WRITE_KEY, str(admin_port)])
    try:
        def serving(exclude: int | None = None) -> set[int] | None:
            pids = _pids(admin_url, 24)
            return pids if len(pids) == 2 and exclude not in pids else None

        first = _wait(serving)  # both workers take connections

        sessions = [requests.Session() for _ in range(8)]
        sent = []
        for k, session in enumerate(sessions):
            ids = [f"s{k}-e{i}" for i in range(20)]
            r = session.post(f"{url}/v1/batch", headers={"Authorization": f"Bearer {WRITE_KEY}"},
                             data=orjson.dumps({"batch": [{"type": "track", "event": "Load", "userId": "u",
                                                           "messageId": m} for m in ids]}))
            assert r.status_code == 200 and r.json()["accepted"] == 20
            sent += ids

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replaced = _wait(lambda: serving(exclude=victim))
        assert len(replaced - first) == 1

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        assert _pids(admin_url, 3) == set()  # nothing listens any more
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = sorted(r.message_id for r in closing(open_bus(bus_url)).read(0, limit=10_000))
    assert stored == sorted(sent)
