"""Client for the e-commerce orders REST API.

OAuth 2.0 client credentials (refreshed on expiry and on 401), Link-header or `next_cursor`
pagination, 429 handling that honours `Retry-After`, exponential backoff with full jitter on 5xx
and connection errors, and a timeout on every call.

Pagination is checked against the total the API reports on its first page (`X-Total-Count`, or a
`total` field): a page that ends the listing early (no next link, no cursor) is an error, not a
finished load. `screen_orders` turns the orders read into raw rows and rejections.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urljoin

import pandas as pd
import requests

from ..normalize import parse_timestamps
from . import SourceError
from .incremental import WINDOW, IncrementalWindow, Screened, screen

SOURCE = "orders_api"
ORDER_COLUMNS = ["order_id", "customer_id", "email", "status", "currency", "total", "created_at",
                 "updated_at", "cart_id", "checkout_id", "lines", "payload", "loaded_at"]


@dataclass
class OrdersApiClient:
    base_url: str
    client_id: str
    client_secret: str
    timeout: float = 10.0
    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    page_size: int = 200
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)
    retries_done: int = 0
    reported_total: int | None = None  # what the first page of the last listing said would come
    received: int = 0  # orders received in the last listing
    pages: int = 0  # pages received in the last listing
    _token: str | None = None
    _token_expires: float = 0.0

    # -- auth ----------------------------------------------------------------------------------
    def _fetch_token(self) -> str:
        response = self._send("POST", urljoin(self.base_url, "/oauth/token"), auth_request=True,
                              data={"grant_type": "client_credentials"})
        body = _json(response)
        if "access_token" not in body:
            raise SourceError(SOURCE, f"token response has no access_token: {str(body)[:200]}")
        self._token = body["access_token"]
        # Refresh a little early so a token does not expire between check and use.
        ttl = float(body.get("expires_in", 300))
        self._token_expires = time.monotonic() + ttl - min(5.0, ttl / 10)
        return self._token

    def _bearer(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expires:
            return self._fetch_token()
        return self._token

    # -- transport -----------------------------------------------------------------------------
    def _send(self, method: str, url: str, *, auth_request: bool = False, **kwargs) -> requests.Response:
        """One logical call, retried on 429/5xx/connection errors, re-authenticated once on 401."""
        reauthenticated = False
        for attempt in range(1, self.max_attempts + 1):
            headers = {"Accept": "application/json"}
            auth = None
            if auth_request:
                auth = (self.client_id, self.client_secret)
            else:
                headers["Authorization"] = f"Bearer {self._bearer()}"
            try:
                response = self.session.request(method, url, headers=headers, auth=auth,
                                                timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == self.max_attempts:
                    raise SourceError(SOURCE, f"cannot reach {url}: {exc.__class__.__name__}") from exc
                self._backoff(attempt)
                continue
            if response.status_code == 401 and not auth_request and not reauthenticated:
                self._token = None  # expired or revoked: fetch a new one and retry once
                reauthenticated = True
                continue
            if response.status_code in (401, 403):
                raise SourceError(SOURCE, f"credentials refused ({response.status_code}) at {url}")
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == self.max_attempts:
                    raise SourceError(SOURCE, f"gave up after {attempt} attempts: HTTP {response.status_code} at {url}")
                self._wait(response, attempt)
                continue
            if response.status_code >= 400:
                raise SourceError(SOURCE, f"HTTP {response.status_code} at {url}: {response.text[:200]}")
            return response
        raise SourceError(SOURCE, f"gave up after {self.max_attempts} attempts at {url}")

    def _wait(self, response: requests.Response, attempt: int) -> None:
        self.retries_done += 1
        retry_after = response.headers.get("Retry-After")
        if response.status_code == 429 and retry_after is not None:
            try:
                self.sleep(min(max(float(retry_after), 0.0), self.backoff_cap))
                return
            except ValueError:
                pass  # an HTTP-date or junk: fall back to backoff
        self._backoff(attempt)

    def _backoff(self, attempt: int) -> None:
        self.retries_done += 1
        self.sleep(random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))))

    # -- orders --------------------------------------------------------------------------------
    def iter_order_pages(self, updated_since: str | None) -> Iterator[list[dict]]:
        """Pages of orders updated at or after `updated_since` (inclusive; loads are upserts).

        Raises `SourceError` after the last page when fewer orders came than the first page said
        would (pagination that stopped early must not look like a complete load)."""
        params: dict | None = {"limit": self.page_size}
        if updated_since:
            params["updated_since"] = updated_since
        url: str | None = urljoin(self.base_url, "/v1/orders")
        self.reported_total, self.received, self.pages, first = None, 0, 0, True
        while url:
            response = self._send("GET", url, params=params)
            body = _json(response)
            orders = body.get("orders") if isinstance(body, dict) else None
            if not isinstance(orders, list):
                raise SourceError(SOURCE, f"malformed page from {url}: no 'orders' list")
            if first:
                self.reported_total, first = _total(response, body), False
            self.received += len(orders)
            self.pages += 1
            yield orders
            next_link = response.links.get("next", {}).get("url")
            if next_link:
                url, params = urljoin(self.base_url, next_link), None
            elif body.get("next_cursor"):
                url = urljoin(self.base_url, "/v1/orders")
                params = {"limit": self.page_size, "cursor": body["next_cursor"]}
            else:
                url = None
        if self.reported_total is not None and self.received < self.reported_total:
            # Orders updated while we page only move later in the listing, so fewer than the
            # first total means pages were lost, not that orders went away.
            raise SourceError(SOURCE, f"pagination ended after {self.received} of the {self.reported_total} orders "
                                      f"the API reported (updated_since={updated_since}): a page came without a next "
                                      "link or cursor; the orders after the last committed chunk were not loaded, "
                                      "run again or check the API")

    def iter_order_chunks(self, updated_since: str | None, size: int) -> Iterator[list]:
        """The pages of `iter_order_pages` joined into lists of about `size` orders, so a load
        holds one chunk, not the listing. The last chunk (possibly empty) comes only after the
        listing was checked complete: a listing that stopped early raises before it."""
        chunk: list = []
        for page in self.iter_order_pages(updated_since):
            chunk.extend(page)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        yield chunk


def _total(response: requests.Response, body: dict) -> int | None:
    """The number of orders the listing holds, as the API reports it (None when it does not)."""
    for value in (response.headers.get("X-Total-Count"), body.get("total")):
        try:
            if value is not None and not isinstance(value, bool) and int(value) >= 0:
                return int(value)
        except (TypeError, ValueError):
            pass
    return None


# json.dumps(..., default=str) and json.dumps(..., sort_keys=True, default=str), each encoder made
# once: json.dumps with options builds a new one per call (two per order).
_LINES_JSON = json.JSONEncoder(default=str).encode
_PAYLOAD_JSON = json.JSONEncoder(sort_keys=True, default=str).encode


def _order_row(order: dict) -> dict:
    """An order as a `raw.shop_orders` row: its fields as text, and the whole order as JSON."""
    def text(name):
        value = order.get(name)
        return None if value in (None, "") else str(value)
    return {
        "order_id": text("order_id"), "customer_id": text("customer_id"), "email": order.get("email"),
        "status": order.get("status"), "currency": order.get("currency"), "total": text("total"),
        "created_at": order.get("created_at"), "updated_at": text("updated_at"),
        "cart_id": order.get("cart_id"), "checkout_id": order.get("checkout_id"),
        "lines": _LINES_JSON(order.get("lines") or []),
        "payload": _PAYLOAD_JSON(order),
        "loaded_at": None,  # stamped per load: the arrival day that partitions staging.orders
    }


def screen_orders(orders: list, *, now, window: IncrementalWindow = WINDOW,
                  keyless_seen: Counter | None = None) -> Screened:
    """The orders of a load as raw rows (latest version per order_id), and the rejections: an
    item that is not an object, an order without order_id or a usable `updated_at`, an order
    from the future, contradicting versions. A keyless order is identified by its content
    (numbered on from `keyless_seen`, the earlier chunks of the load)."""
    rows = [_order_row(o) if isinstance(o, dict) else dict.fromkeys(ORDER_COLUMNS) | {
        "payload": json.dumps(o, sort_keys=True, default=str)} for o in orders]
    frame = pd.DataFrame(rows, columns=ORDER_COLUMNS)
    stamps = parse_timestamps(frame["updated_at"], day_first=False)
    return screen(frame, key="order_id", stamps=stamps, record_ids=frame["order_id"], now=now, window=window,
                  payloads=frame["payload"], keyless_seen=keyless_seen)


def _json(response: requests.Response):
    try:
        return response.json()
    except ValueError as exc:
        raise SourceError(SOURCE, f"malformed JSON from {response.url}: {response.text[:120]!r}") from exc
