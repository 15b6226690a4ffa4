"""Real peers on 127.0.0.1 for the delivery tests and `bench.delivery`: an ESP-like send API that
deduplicates on Idempotency-Key and rate-limits with 429 + Retry-After, an SMTP server (aiosmtpd)
that records Message-IDs, and helpers that fill a trigger ledger, guard store and payload store."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from personalization_assets.activation.destinations.webhook import (
    IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify,
)
from personalization_assets.realtime.engine import Decision
from personalization_assets.realtime.guards import SqliteGuardProvider
from personalization_assets.realtime.ledger import Ledger

SECRET = "esp-secret"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a sender killed mid-request resets its connection: expected here, not news


class EspServer:
    """Accepts a signed POST per e-mail; a key it has seen is acknowledged again but not delivered
    again. `rate`: requests per second it accepts (token bucket), beyond which it answers 429 with
    `Retry-After: retry_after`. `on_request(n)` runs before request n is answered (a test kills
    the sender there: the message is accepted, the answer never read)."""

    def __init__(self, secret: str = SECRET, rate: float | None = None, retry_after: float = 0.2,
                 on_request=None, burst: float | None = None):
        peer = self
        self.secret, self.rate, self.retry_after, self.on_request = secret, rate, retry_after, on_request
        self.lock = threading.Lock()
        self.raw = 0
        self.throttled = 0
        self.delivered: Counter[str] = Counter()  # key -> deliveries (each key delivered once)
        self.accepted_at: dict[str, float] = {}
        self.bad_signatures = 0
        self.truncated = 0  # the client died while sending the body
        self.after_429: list[float] = []  # seconds from each 429 to the next request
        self._last_429: float | None = None
        self.burst = burst if burst is not None else (rate or 0.0)
        self._tokens, self._updated = self.burst, time.monotonic()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()  # answer at once: no Nagle wait between headers and body
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:
                    with peer.lock:
                        peer.truncated += 1
                    self.close_connection = True
                    return
                status, headers = peer.handle(self.headers, body)
                self.send_response(status)
                for k, v in {"Content-Length": "2", "Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/send"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _allow(self) -> bool:
        if self.rate is None:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def handle(self, headers, body: bytes) -> tuple[int, dict]:
        with self.lock:
            self.raw += 1
            n = self.raw
            if self._last_429 is not None:
                self.after_429.append(time.monotonic() - self._last_429)
                self._last_429 = None
            if not verify(self.secret, headers.get(TIMESTAMP_HEADER, ""), body, headers.get(SIGNATURE_HEADER, "")):
                self.bad_signatures += 1
                return 401, {}
            if not self._allow():
                self.throttled += 1
                self._last_429 = time.monotonic()
                return 429, {"Retry-After": f"{self.retry_after:g}"}
            key = headers.get(IDEMPOTENCY_HEADER, "")
            doc = json.loads(body)
            assert doc["rows"][0]["idempotency_key"] == key
            if key not in self.delivered:
                self.delivered[key] = 1
                self.accepted_at[key] = time.time()
        if self.on_request is not None:
            self.on_request(n)
        return 200, {}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _Recorder:
    def __init__(self, sink: "SmtpSink"):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        with self.sink.lock:
            self.sink.messages.append(msg)
            self.sink.ids[msg["Message-ID"]] += 1
            self.sink.accepted_at.setdefault(msg["Message-ID"], time.time())
            n = len(self.sink.messages)
        if self.sink.on_message is not None:
            self.sink.on_message(n)
        return "250 OK"


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1; counts every message by Message-ID."""

    def __init__(self, on_message=None):
        self.lock = threading.Lock()
        self.messages: list = []
        self.ids: Counter[str] = Counter()
        self.accepted_at: dict[str, float] = {}
        self.on_message = on_message
        with socket.socket() as s:  # aiosmtpd's start() connects to its port: it needs a real one
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(_Recorder(self), hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.ids.values())


def payload(i: int) -> dict:
    return {"greeting": f"Hi Ann{i}", "first_name": f"Ann{i}", "locale": "en", "currency": "EUR",
            "cart": [{"sku": "sku-1", "name": "Linen shirt", "quantity": 1, "price_minor": 4900,
                      "currency": "EUR", "price": "49.00 EUR"}],
            "last_viewed": [], "recommendations": [{"sku": "sku-2", "name": "Canvas tote", "reason": "bought together"}],
            "loyalty_tier": "gold", "discount_eligible": True, "segments": ["cart_abandoners"]}


def seed(ledger_path, guard_path, payloads, n: int, start: datetime | None = None,
         unsubscribed: set[int] = frozenset(), purchased: set[int] = frozenset()) -> list[str]:
    """n fires (user u<i>, cart c<i>) in the ledger, known opted-in customers in the guard store,
    and their payloads. Returns the fire keys."""
    start = start or datetime.now(timezone.utc) - timedelta(minutes=5)
    decisions = [Decision("fire", "cart_abandonment", f"cart_id:c{i}", f"u{i}", start, start + timedelta(seconds=2),
                          start + timedelta(seconds=3), start + timedelta(seconds=2.5)) for i in range(n)]
    ledger = Ledger(ledger_path)
    ledger.commit(decisions, 1)
    ledger.close()
    guard = SqliteGuardProvider(guard_path)
    guard.sync([(f"u{i}", True, True, i in unsubscribed, start + timedelta(seconds=1) if i in purchased else None, None)
                for i in range(n)])
    guard.close()
    payloads.sync([(f"u{i}", f"cus_{i:06d}", f"ann{i}@example.com", payload(i)) for i in range(n)])
    return [d.fire_key for d in decisions]
