"""A real collector on 127.0.0.1 (uvicorn in a thread) over a SQLite bus under tmp_path."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import pytest
import requests
import uvicorn

from personalization_assets.bus import open_bus, open_quarantine_bus
from personalization_assets.collector import CollectorSettings, create_app

WRITE_KEY = "test-write-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningCollector:
    url: str
    bus_url: str
    app: object

    def bus(self):
        return open_bus(self.bus_url)

    def quarantine(self):
        return open_quarantine_bus(self.bus_url)


def start_collector(settings: CollectorSettings, app=None):
    app = app or create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.05)
    else:
        raise RuntimeError("collector did not start within 10 s")
    return server, thread, url


@pytest.fixture
def collector(tmp_path):
    bus_url = f"sqlite:///{tmp_path}/bus/events.db"
    settings = CollectorSettings(bus_url=bus_url, write_keys=frozenset({WRITE_KEY}))
    app = create_app(settings)
    server, thread, url = start_collector(settings, app)
    yield RunningCollector(url, bus_url, app)
    server.should_exit = True
    thread.join(10)
