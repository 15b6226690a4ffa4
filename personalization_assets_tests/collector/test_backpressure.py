"""When the bus is slow (its write lock held by another process), the collector answers 429 with
Retry-After instead of queueing without bound, and every request it did accept is stored."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import orjson
import requests

from personalization_assets.collector import CollectorSettings

from .conftest import WRITE_KEY, start_collector


def _batch(start: int, n: int = 100) -> bytes:
    return orjson.dumps({"writeKey": WRITE_KEY, "batch": [
        {"type": "track", "event": "E", "userId": "u", "messageId": f"m-{start + i}"} for i in range(n)]})


def test_slow_bus_gives_429_with_retry_after_and_loses_nothing(tmp_path):
    db = tmp_path / "events.db"
    settings = CollectorSettings(bus_url=f"sqlite:///{db}", write_keys=frozenset({WRITE_KEY}),
                                 max_pending_events=150)
    server, thread, url, _ = start_collector(settings)
    try:
        blocker = sqlite3.connect(str(db), isolation_level=None, timeout=1)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the bus
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(r=requests.post(f"{url}/v1/batch", data=_batch(0), timeout=30)))
        t.start()
        time.sleep(0.5)
        second = requests.post(f"{url}/v1/batch", data=_batch(100), timeout=10)
        assert second.status_code == 429
        assert int(second.headers["Retry-After"]) >= 1
        assert second.json()["code"] == "too_many_requests"
        assert "r" not in first  # not answered while the bus is blocked
        blocker.execute("ROLLBACK")
        t.join(30)
        assert first["r"].status_code == 200 and first["r"].json()["accepted"] == 100
        retried = requests.post(f"{url}/v1/batch", data=_batch(100), timeout=10)
        assert retried.status_code == 200
        count = sqlite3.connect(str(Path(db))).execute("select count(*) from events").fetchone()[0]
        assert count == 200
    finally:
        server.should_exit = True
        thread.join(10)
