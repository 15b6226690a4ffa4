"""Real Segment and RudderStack Python clients against a collector on 127.0.0.1.

Faults (429, 5xx, a stored-but-lost response) are injected by an ASGI wrapper around the real app,
so the clients' own retry logic meets the real collector and bus.
"""

from __future__ import annotations

import threading
import time

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from personalization_assets.collector import CollectorSettings, create_app

from .conftest import WRITE_KEY, RunningCollector, start_collector


def _send_calls(client, tag: str) -> list[dict]:
    """identify, track and page from one client; returns the messages as the client sent them."""
    sent = []
    for i in range(5):
        sent.append(client.identify(f"{tag}-user-{i}", {"email": f"{tag}{i}@example.com", "plan": "pro"})[1])
        sent.append(client.track(f"{tag}-user-{i}", "Product Added",
                                 {"sku": f"SKU-{i}", "price": 9.5 + i, "currency": "EUR"})[1])
        sent.append(client.page(f"{tag}-user-{i}", "Shop", "Cart", {"url": f"https://shop.example/cart/{i}"})[1])
    client.flush()
    return sent


def _assert_exactly_once(collector: RunningCollector, sent: list[dict]) -> None:
    records = collector.bus().read(0, limit=10_000)
    by_id: dict[str, list] = {}
    for r in records:
        by_id.setdefault(r.message_id, []).append(r.event)
    for msg in sent:
        stored = by_id.get(msg["messageId"])
        assert stored is not None, f"{msg['type']} {msg['messageId']} never reached the bus"
        assert len(stored) == 1, f"{msg['messageId']} stored {len(stored)} times"
        event = stored[0]
        assert event["type"] == msg["type"] and event["userId"] == msg["userId"]
        for field in ("event", "name", "properties", "traits"):
            if field in msg:
                assert event[field] == msg[field], field
        assert event["originalTimestamp"] == msg["timestamp"]
        assert event["receivedAt"] and event["sentAt"] and event["timestamp"]
        assert event["context"]["library"]["name"]
    assert len(records) == len(sent)


@pytest.mark.parametrize("gzip", [False, True])
def test_segment_client_events_arrive_exactly_once(collector, gzip):
    errors = []
    client = SegmentClient(WRITE_KEY, host=collector.url, gzip=gzip, max_retries=3,
                           on_error=lambda e, batch: errors.append(e))
    sent = _send_calls(client, "seg")
    client.shutdown()
    assert errors == []
    _assert_exactly_once(collector, sent)


def test_rudder_client_events_arrive_exactly_once(collector):
    errors = []
    client = RudderClient(WRITE_KEY, host=collector.url, on_error=lambda e, batch: errors.append(e))
    sent = _send_calls(client, "rud")
    client.shutdown()
    assert errors == []
    _assert_exactly_once(collector, sent)


class FaultInjector:
    """ASGI wrapper: plays a script of faults on /v1/batch, then passes requests through.

    "429"/"503": answer without touching the app. "lost": let the app store the batch, then
    answer 502 as if a proxy dropped the response, so the client retries an already-stored batch.
    """

    def __init__(self, app, script: list[str]) -> None:
        self.app, self.script, self.seen = app, list(script), []
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        fault = None
        if scope["type"] == "http" and scope["path"] == "/v1/batch":
            with self._lock:
                fault = self.script.pop(0) if self.script else None
                self.seen.append(fault or "pass")
        if fault in ("429", "503"):
            headers = [(b"content-type", b"application/json")]
            if fault == "429":
                headers.append((b"retry-after", b"1"))
            await send({"type": "http.response.start", "status": int(fault), "headers": headers})
            await send({"type": "http.response.body", "body": b'{"code":"injected","message":"fault"}'})
            return
        if fault == "lost":
            async def swallow(message):
                if message["type"] == "http.response.start":
                    message = {**message, "status": 502}
                await send(message)
            return await self.app(scope, receive, swallow)
        return await self.app(scope, receive, send)


@pytest.fixture
def faulty_collector(tmp_path):
    bus_url = f"sqlite:///{tmp_path}/bus/events.db"
    settings = CollectorSettings(bus_url=bus_url, write_keys=frozenset({WRITE_KEY}))
    app = create_app(settings)
    injector = FaultInjector(app, ["429", "503", "lost"])
    server, thread, url, admin_url = start_collector(settings, injector, app.state.admin)
    running = RunningCollector(url, bus_url, app, admin_url)
    yield running, injector
    running.close()
    server.should_exit = True
    thread.join(10)


def test_segment_client_survives_429_5xx_and_a_lost_response(faulty_collector):
    collector, injector = faulty_collector
    errors = []
    client = SegmentClient(WRITE_KEY, host=collector.url, max_retries=5, upload_size=100,
                           on_error=lambda e, batch: errors.append(e))
    sent = [client.track(f"u{i}", "Checkout Started", {"cart_id": f"c{i}"})[1] for i in range(20)]
    t0 = time.monotonic()
    client.flush()
    client.shutdown()
    assert errors == [] and time.monotonic() - t0 < 30
    assert injector.seen[:4] == ["429", "503", "lost", "pass"]
    _assert_exactly_once(collector, sent)


def test_rudder_client_survives_429_5xx_and_a_lost_response(faulty_collector):
    collector, injector = faulty_collector
    errors = []
    client = RudderClient(WRITE_KEY, host=collector.url, max_retries=5,
                          on_error=lambda e, batch: errors.append(e))
    sent = [client.track(f"u{i}", "Checkout Started", {"cart_id": f"c{i}"})[1] for i in range(20)]
    client.flush()
    client.shutdown()
    assert errors == []
    assert injector.seen[:4] == ["429", "503", "lost", "pass"]
    _assert_exactly_once(collector, sent)
