"""`personalization up`: every service starts, answers where it says it listens, and Ctrl-C stops
every process it started (their children too)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(children - found)
            found |= children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's wait is missing


def test_up_starts_every_service_and_ctrl_c_stops_them_all(tmp_path):
    collector, admin, triggers, page, ui = _free_ports(5)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "PERSONALIZATION_DATA_DIR": str(tmp_path / "data"),
           "PYTHONUNBUFFERED": "1"}
    for name in ("EVENT_BUS_URL", "PERSONALIZATION_DUCKDB_PATH", "DAGSTER_DEPLOYMENT", "SMTP_HOST", "DELIVERY_CHANNEL"):
        env.pop(name, None)
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "personalization_assets.cli", "up", "--collector-port", str(collector),
             "--admin-port", str(admin), "--triggers-port", str(triggers), "--page-port", str(page),
             "--ui-port", str(ui), "--start-timeout", "150"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 170
        while "the live system is running" not in log.read_text():
            assert up.poll() is None, f"up exited with {up.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready in time:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        text = log.read_text()
        for where in (f"http://127.0.0.1:{collector}/v1/batch", f"http://127.0.0.1:{triggers}/metrics",
                      f"http://127.0.0.1:{page}/", f"http://127.0.0.1:{ui}"):
            assert where in text  # each says where it listens
        assert "channel preview: nothing leaves the machine" in text  # no mail server configured
        assert requests.get(f"http://127.0.0.1:{admin}/health", timeout=5).status_code == 200
        accepted = requests.post(f"http://127.0.0.1:{collector}/v1/track", timeout=5, json={
            "type": "track", "event": "Product Viewed", "userId": "u1", "messageId": "live-1",
            "properties": {"sku": "SKU-1", "price": 9.9, "currency": "EUR"}})
        assert accepted.status_code == 200, accepted.text
        assert requests.get(f"http://127.0.0.1:{triggers}/metrics", timeout=5).status_code == 200
        assert requests.get(f"http://127.0.0.1:{page}/", timeout=5).status_code == 200
        assert requests.get(f"http://127.0.0.1:{ui}/server_info", timeout=10).status_code == 200
        children = _descendants(up.pid)
        assert len(children) >= 5  # collector, engine, sender, dagster dev and its webserver/daemon
        os.kill(up.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        assert up.wait(90) == 0, log.read_text()[-3000:]
    finally:
        if up.poll() is None:  # the test failed: leave nothing behind
            for pid in _descendants(up.pid) | {up.pid}:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            up.wait(30)
    left = sorted(pid for pid in children if _alive(pid))
    assert left == [], f"still running after Ctrl-C: {left}"
    text = log.read_text()
    for name in ("collector", "triggers", "deliver", "dagster"):
        assert f"up: {name} stopped" in text
