"""A real collector on 127.0.0.1 (uvicorn in a thread, the production server setup: public and
admin sockets, connection limits) over a SQLite bus under tmp_path."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from personalization_assets.bus import open_bus, open_quarantine_bus
from personalization_assets.collector import CollectorSettings, create_app
from personalization_assets.collector.server import bind, build_server
from personalization_assets_tests.leaks import closing, no_leaked_bus_thread  # noqa: F401 - fixtures

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
    admin_url: str = ""
    opened: list = field(default_factory=list)  # closed by the fixture's teardown

    def bus(self):
        self.opened.append(bus := open_bus(self.bus_url))
        return bus

    def quarantine(self):
        self.opened.append(bus := open_quarantine_bus(self.bus_url))
        return bus

    def close(self) -> None:
        """Close the buses the test opened through `bus()` and `quarantine()`."""
        while self.opened:
            self.opened.pop().close()


def start_collector(settings: CollectorSettings, app=None, admin_app=None):
    """(server, thread, public url, admin url) of a collector serving `app` (default: the real one)."""
    app = app or create_app(settings)
    public, admin = bind("127.0.0.1", 0), bind("127.0.0.1", 0)
    server = build_server(settings, public, admin, app=app, admin_app=admin_app or app.state.admin)
    thread = threading.Thread(target=server.run, kwargs={"sockets": server.collector_sockets}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{public.getsockname()[1]}"
    admin_url = f"http://127.0.0.1:{admin.getsockname()[1]}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{admin_url}/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.05)
    else:
        raise RuntimeError("collector did not start within 10 s")
    return server, thread, url, admin_url


@pytest.fixture
def collector(tmp_path):
    bus_url = f"sqlite:///{tmp_path}/bus/events.db"
    settings = CollectorSettings(bus_url=bus_url, write_keys=frozenset({WRITE_KEY}))
    app = create_app(settings)
    server, thread, url, admin_url = start_collector(settings, app)
    running = RunningCollector(url, bus_url, app, admin_url)
    yield running
    running.close()
    server.should_exit = True
    thread.join(10)
