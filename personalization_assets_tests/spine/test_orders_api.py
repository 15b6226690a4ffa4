"""The orders client against a real HTTP server on 127.0.0.1 that expires tokens, pages and throttles."""

import json
import time

import pytest

from personalization_assets.demo.orders_api_server import ApiBehaviour, OrdersApiServer
from personalization_assets.sources import SourceError
from personalization_assets.sources.orders_api import OrdersApiClient


def _write_orders(directory, n, start_minute=0):
    rows = [{"order_id": f"o{i:04d}", "customer_id": str(i), "status": "paid", "currency": "EUR",
             "total": "10.00", "lines": [],
             "created_at": f"2026-01-01T00:{(start_minute + i) % 60:02d}:00+00:00",
             "updated_at": f"2026-01-01T{(start_minute + i) // 60:02d}:{(start_minute + i) % 60:02d}:00+01:00"}
            for i in range(n)]
    (directory / "orders.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _client(server, **kwargs):
    sleeps = []
    client = OrdersApiClient(server.url, "demo-client", "demo-secret", page_size=7,
                             sleep=sleeps.append, **kwargs)
    return client, sleeps


def _all(client, since=None):
    return [o for page in client.iter_order_pages(since) for o in page]


def test_pages_throttling_and_errors_lose_nothing(tmp_path):
    _write_orders(tmp_path, 50)
    behaviour = ApiBehaviour(rate_limit_every=3, retry_after="2", error_every=5)
    with OrdersApiServer(tmp_path, behaviour) as server:
        client, sleeps = _client(server)
        orders = _all(client)
    assert sorted(o["order_id"] for o in orders) == [f"o{i:04d}" for i in range(50)]
    assert behaviour.throttled > 0 and behaviour.errors > 0
    assert 2.0 in sleeps  # Retry-After honoured
    assert all(0 <= s <= 30 for s in sleeps)


def test_expired_token_is_refreshed_on_401(tmp_path):
    _write_orders(tmp_path, 30)
    behaviour = ApiBehaviour(token_ttl=0.3)
    with OrdersApiServer(tmp_path, behaviour) as server:
        client, _ = _client(server)
        pages = client.iter_order_pages(None)
        first = next(pages)
        time.sleep(0.4)  # the server now rejects the cached token
        client._token_expires = time.monotonic() + 60  # the client still believes it is valid
        rest = [o for page in pages for o in page]
    assert len(first) + len(rest) == 30
    assert behaviour.unauthorized >= 1  # the stale token was refused ...
    assert behaviour.tokens_issued >= 2  # ... and replaced, without losing a page


def test_updated_since_is_incremental(tmp_path):
    rows = _write_orders(tmp_path, 20)
    with OrdersApiServer(tmp_path) as server:
        client, _ = _client(server)
        since = rows[12]["updated_at"]
        newer = _all(client, since)
    assert [o["order_id"] for o in newer] == [f"o{i:04d}" for i in range(12, 20)]


def test_refused_credentials(tmp_path):
    _write_orders(tmp_path, 1)
    with OrdersApiServer(tmp_path) as server:
        client = OrdersApiClient(server.url, "demo-client", "wrong", sleep=lambda s: None)
        with pytest.raises(SourceError, match="orders_api: credentials refused"):
            _all(client)


def test_malformed_json_is_a_clear_error(tmp_path):
    _write_orders(tmp_path, 1)
    with OrdersApiServer(tmp_path, ApiBehaviour(malformed_json=True)) as server:
        client, _ = _client(server)
        with pytest.raises(SourceError, match="orders_api: malformed JSON"):
            _all(client)


def test_unreachable_api_gives_up_with_the_cause():
    client = OrdersApiClient("http://127.0.0.1:1", "a", "b", max_attempts=2, sleep=lambda s: None,
                             timeout=0.5)
    with pytest.raises(SourceError, match="orders_api: cannot reach"):
        _all(client)


def test_persistent_throttling_gives_up(tmp_path):
    _write_orders(tmp_path, 1)
    with OrdersApiServer(tmp_path, ApiBehaviour(rate_limit_every=1)) as server:
        client, sleeps = _client(server, max_attempts=3)
        with pytest.raises(SourceError, match="gave up after 3 attempts: HTTP 429"):
            _all(client)
    assert len(sleeps) == 2
