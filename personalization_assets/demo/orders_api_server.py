"""A small but honest e-commerce orders API on 127.0.0.1, used by the demo and the tests.

It behaves like the real thing where clients usually break: OAuth tokens expire, pages continue
through a `Link: rel="next"` header, and it answers 429 (with `Retry-After`) or 503 now and then.
Every page reports how many orders the listing holds (`X-Total-Count` and a `total` field), as
real APIs do, so a client can tell a finished listing from one that stopped early.
"""

from __future__ import annotations

import base64
import bisect
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse


@dataclass
class ApiBehaviour:
    client_id: str = "demo-client"
    client_secret: str = "demo-secret"
    token_ttl: float = 300.0
    rate_limit_every: int = 0  # answer 429 to every Nth data request (0 = never)
    retry_after: str = "0"
    error_every: int = 0  # answer 503 to every Nth data request (0 = never)
    malformed_json: bool = False
    fail_after: int = 0  # answer 503 to every data request after the first N (0 = never)
    drop_next_after: int = 0  # the Nth page and later come without their next link (0 = never)
    requests: int = 0
    throttled: int = 0
    errors: int = 0
    tokens_issued: int = 0
    unauthorized: int = 0
    tokens: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class OrdersApiServer:
    """Serves `orders.jsonl` from `catalogue_dir`, re-read on every request so new orders appear."""

    def __init__(self, catalogue_dir: str | Path, behaviour: ApiBehaviour | None = None, port: int = 0):
        self.path = Path(catalogue_dir) / "orders.jsonl"
        self.behaviour = behaviour or ApiBehaviour()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._cache: list[str] = []  # each order's JSON text, in listing order
        self._keys: list[float] = []  # each order's updated_at as epoch seconds, for `updated_since`
        self._cache_version: tuple | None = None
        self._cache_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> OrdersApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def orders(self) -> tuple[list[str], list[float]]:
        """The catalogue sorted by (updated_at, order_id), as each order's JSON text and its time;
        read again only when the file changes. Text, not dicts: the served process holds ~1/4."""
        if not self.path.exists():
            return [], []
        stat = self.path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        with self._cache_lock:
            if self._cache_version != version:
                rows = []
                for line in self.path.read_text().splitlines():
                    if line.strip():
                        order = json.loads(line)
                        rows.append((_utc_key(order.get("updated_at")), str(order.get("order_id", "")), line.strip()))
                rows.sort(key=lambda row: row[:2])
                self._cache, self._keys = [row[2] for row in rows], [row[0] for row in rows]
                self._cache_version = version
            return self._cache, self._keys


def _utc_key(value) -> float:
    """Sort position of an `updated_at`; one that is not a time sorts last, so it is still served."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")


def _handler(api: OrdersApiServer):
    b = api.behaviour

    class Handler(BaseHTTPRequestHandler):
        # Keep-alive: a listing of 108k orders is ~540 pages, and a connection (and a server
        # thread) per page cost more than serving it. Every reply carries its Content-Length.
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _reply(self, status: int, body: dict | str, headers: dict | None = None) -> None:
            payload = body if isinstance(body, str) else json.dumps(body)
            data = payload.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            if urlparse(self.path).path != "/oauth/token":
                return self._reply(404, {"error": "not_found"})
            expected = base64.b64encode(f"{b.client_id}:{b.client_secret}".encode()).decode()
            if self.headers.get("Authorization") != f"Basic {expected}":
                return self._reply(401, {"error": "invalid_client"})
            if form.get("grant_type") != ["client_credentials"]:
                return self._reply(400, {"error": "unsupported_grant_type"})
            token = secrets.token_urlsafe(16)
            with b.lock:
                b.tokens[token] = time.monotonic() + b.token_ttl
                b.tokens_issued += 1
            self._reply(200, {"access_token": token, "token_type": "bearer",
                              "expires_in": b.token_ttl})

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path != "/v1/orders":
                return self._reply(404, {"error": "not_found"})
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            with b.lock:
                valid = b.tokens.get(token, 0) > time.monotonic()
                b.requests += 1
                n = b.requests
            if not valid:
                b.unauthorized += 1
                return self._reply(401, {"error": "invalid_token"})
            if b.rate_limit_every and n % b.rate_limit_every == 0:
                b.throttled += 1
                return self._reply(429, {"error": "rate_limited"}, {"Retry-After": b.retry_after})
            if b.error_every and n % b.error_every == 0:
                b.errors += 1
                return self._reply(503, {"error": "unavailable"})
            if b.fail_after and n > b.fail_after:
                b.errors += 1
                return self._reply(503, {"error": "unavailable"})
            if b.malformed_json:
                return self._reply(200, "{not json")
            self._orders_page(parse_qs(url.query))

        def _orders_page(self, query: dict) -> None:
            limit = min(int(query.get("limit", ["100"])[0]), 500)
            offset = int(query.get("cursor", ["0"])[0])
            since = query.get("updated_since", [None])[0]
            rows, keys = api.orders()
            if since:
                rows = rows[bisect.bisect_left(keys, _utc_key(since)):]
            page = rows[offset: offset + limit]
            headers = {"X-Total-Count": str(len(rows))}
            dropped = b.drop_next_after and offset // max(limit, 1) + 1 >= b.drop_next_after
            if offset + limit < len(rows) and not dropped:
                params = {"limit": limit, "cursor": offset + limit}
                if since:
                    params["updated_since"] = since
                headers["Link"] = f'</v1/orders?{urlencode(params)}>; rel="next"'
            self._reply(200, f'{{"orders": [{", ".join(page)}], "total": {len(rows)}}}', headers)

    return Handler
