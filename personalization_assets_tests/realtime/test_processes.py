"""Real processes: the collector and the trigger engine as subprocesses, on the SQLite bus and on
Redis, fed by the real Segment client. Windows are shortened to 1 s (+0.5 s lateness)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from segment.analytics.client import Client as SegmentClient

from personalization_assets.realtime.guards import SqliteGuardProvider
from personalization_assets.realtime.ledger import Ledger

from personalization_assets_tests.conftest import REPO_ROOT, require_service

WRITE_KEY = "triggers-test-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _spawn(args: list[str], tmp_path: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "PERSONALIZATION_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(params=["sqlite", "redis"])
def bus_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/events.db"
        return
    require_service("127.0.0.1", 6379, "Redis")
    from personalization_assets.bus import open_bus

    url = f"redis://127.0.0.1:6379/0?stream=triggers-test-{uuid.uuid4().hex[:8]}"
    yield url
    bus = open_bus(url)
    bus.drop()
    bus.close()


def test_cart_fires_after_the_window_and_an_ordered_cart_never_does(bus_url, tmp_path):
    guard = SqliteGuardProvider(tmp_path / "guard.sqlite")
    for user in ("shopper-1", "shopper-2"):
        guard.upsert(user, timezone_name="Europe/Berlin")
    guard.close()
    port, admin_port = _free_port(), _free_port()
    collector = _spawn(["personalization_assets.cli", "collector", "--port", str(port), "--bus", bus_url,
                        "--admin-port", str(admin_port), "--write-key", WRITE_KEY], tmp_path, "collector")
    engine = _spawn(["personalization_assets.realtime", "--bus", bus_url, "--state",
                     str(tmp_path / "triggers.sqlite"), "--guard", str(tmp_path / "guard.sqlite"),
                     "--port", "0", "--no-quiet-hours", "--set", "cart_abandonment.delay=1s",
                     "--set", "cart_abandonment.allowed_lateness=0.5s"], tmp_path, "engine")
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until(lambda: _ok(f"http://127.0.0.1:{admin_port}/health"), 20, "the collector")
        metrics_port = _wait_until(lambda: _engine_port(tmp_path / "engine.log"), 20, "the engine")
        client = SegmentClient(WRITE_KEY, host=url, max_retries=2)
        client.track("shopper-1", "Product Added", {"cart_id": "cart-A", "sku": "S1"})
        client.track("shopper-2", "Product Added", {"cart_id": "cart-B", "sku": "S2"})
        client.track("shopper-2", "Order Completed", {"cart_id": "cart-B", "order_id": "o-B"})
        client.flush()
        sent = time.time()
        client.shutdown()

        ledger = Ledger(tmp_path / "triggers.sqlite")
        fires = _wait_until(lambda: ledger.fires(), 15, "the cart-A fire")
        (fire,) = fires
        assert fire[1:4] == ("cart_abandonment", "shopper-1", "cart_id:cart-A")
        assert fire[9] == "fire" and fire[7] >= fire[5]  # decided no earlier than due
        assert fire[7] - sent < 10
        metrics = _wait_until(lambda: _metrics_with(metrics_port, 'reason="cart_id"'), 10, "cancel metric")
        assert 'triggers_fired_total{trigger="cart_abandonment"} 1.0' in metrics
        # the engine's frontier is now well past cart-B's due time + lateness: still no fire
        _wait_until(lambda: _frontier(metrics_port) > fire[5] + 2, 10, "the frontier")
        assert [f[3] for f in ledger.fires()] == ["cart_id:cart-A"]
        ledger.close()
    finally:
        _stop(engine)
        _stop(collector)
    assert engine.returncode == 0, (tmp_path / "engine.log").read_text()


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _engine_port(log: Path) -> int | None:
    for line in log.read_text().splitlines():
        if line.startswith("triggers: consuming"):
            return int(line.rsplit(":", 1)[1])
    return None


def _metrics_with(port: int, needle: str) -> str | None:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    return text if needle in text else None


def _frontier(port: int) -> float:
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text.splitlines():
        if line.startswith("triggers_frontier_timestamp_seconds "):
            return float(line.split()[1])
    return 0.0
