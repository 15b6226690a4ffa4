"""Validation throughput: events (validate_event) and staged tables (business rules + Pandera).

    python -m bench.validation [--events 1000000] [--invalid-share 0.1] [--orders 1000000]

Events: validate_event over generated events (mixed valid / invalid), dict and JSON-bytes input.
Target (issue 7, the collector): 20,000 events/s on 2 cores including HTTP and the bus, so the
validator alone must run well above that on one core.

Tables: `apply_order_rules` over generated staged orders (1-3 lines each, 1% with an unknown
status), then the blocking Pandera checks (StagingOrders, StagingOrderLines) on the valid rows, as
staging runs them. Prints order rows/s per step and for both together.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personalization_assets.quality import validate_event  # noqa: E402
from personalization_assets.quality.checks import run_model  # noqa: E402
from personalization_assets.quality.rules import apply_order_rules  # noqa: E402
from personalization_assets.schemas.tables import StagingOrderLines, StagingOrders  # noqa: E402

TARGET = 20_000
NAMES = ["Product Viewed", "Product Added", "Product Removed", "Cart Viewed", "Checkout Started",
         "Order Completed", "Order Refunded", "Some Custom Event"]


def make_events(n: int, invalid_share: float, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    received = datetime.now(timezone.utc).isoformat()
    base = datetime.now(timezone.utc) - timedelta(hours=1)
    out = []
    for i in range(n):
        name = NAMES[i % len(NAMES)]
        product = {"product_id": f"P{i % 400}", "sku": f"SKU-{i % 400}", "price": 59.9, "quantity": 1 + i % 3,
                   "currency": "EUR", "category": "shoes"}
        props = dict(product) if name.startswith("Product") else {
            "order_id": f"o{i}", "cart_id": f"c{i % 999}", "checkout_id": f"k{i}", "total": 99.5,
            "revenue": 90.0, "currency": "EUR", "products": [product, dict(product, sku="SKU-X")]}
        e = {"type": "track", "event": name, "messageId": f"m-{i}", "anonymousId": f"anon-{i % 7919}",
             "userId": f"user-{i % 5000}" if i % 2 else None,
             "timestamp": (base + timedelta(milliseconds=i)).isoformat(), "receivedAt": received,
             "context": {"library": {"name": "analytics.js", "version": "4.1"}, "ip": "10.0.0.1"},
             "properties": props}
        if i % 10 == 0:
            e = {"type": "page", "messageId": f"m-{i}", "anonymousId": "a", "timestamp": e["timestamp"], "receivedAt": received,
                 "properties": {"url": "https://shop.example/", "path": "/"}}
        if rnd.random() < invalid_share:
            bad = rnd.randrange(4)
            if bad == 0:
                e["properties"]["currency"] = "euro"
            elif bad == 1:
                e.pop("messageId")
            elif bad == 2:
                e["timestamp"] = "2099-01-01T00:00:00Z"
            else:
                e["properties"]["price"] = "free"
        out.append(e)
    return out


def run(payloads) -> tuple[float, int]:
    start = time.perf_counter()
    rejected = 0
    for p in payloads:
        ok, _ = validate_event(p)
        rejected += ok is None
    return len(payloads) / (time.perf_counter() - start), rejected


STATUSES = ["paid", "shipped", "delivered", "cancelled"]


def make_orders(n: int, invalid_share: float = 0.01, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    """Staged orders and lines as `staging` produces them, and the known customer ids."""
    rng = np.random.default_rng(seed)
    ids = np.char.add("ord-", np.arange(n).astype(str)).astype(object)
    per_order = rng.integers(1, 4, n)
    order_of_line = np.repeat(np.arange(n), per_order)
    line_no = np.arange(len(order_of_line)) - np.repeat(np.cumsum(per_order) - per_order, per_order) + 1
    quantity = rng.integers(1, 3, len(order_of_line))
    unit = rng.integers(100, 10_000, len(order_of_line))
    currency = rng.choice(["EUR", "GBP", "USD"], n).astype(object)
    guest = rng.random(n) < 0.05
    customers = np.char.add("crm:", rng.integers(0, 50_000, n).astype(str)).astype(object)
    status = rng.choice(STATUSES, n).astype(object)
    status[rng.random(n) < invalid_share] = "lost-in-transit"
    orders = pd.DataFrame({
        "order_id": ids, "customer_record_id": np.where(guest, None, customers), "is_guest": guest,
        "email": "someone@example.com", "status": status, "currency": currency,
        "total_minor": np.bincount(order_of_line, weights=quantity * unit).astype("int64"),
        "created_at": pd.Timestamp("2025-12-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s"),
        "updated_at": pd.Timestamp("2025-12-31", tz="UTC"), "cart_id": None, "checkout_id": None,
    })
    lines = pd.DataFrame({
        "order_id": ids[order_of_line], "line_no": line_no, "sku": "SKU-1", "product_name": "Shoe",
        "category": "shoes", "quantity": quantity, "unit_price_minor": unit, "line_total_minor": quantity * unit,
        "currency": currency[order_of_line],
    })
    return orders, lines, {f"crm:{i}" for i in range(50_000)}


def run_tables(n: int) -> None:
    orders, lines, known = make_orders(n)
    start = time.perf_counter()
    result = apply_order_rules(orders, lines, known_customer_ids=known, known_statuses=set(STATUSES))
    rules_s = time.perf_counter() - start
    start = time.perf_counter()
    failures = run_model(StagingOrders, result.orders) + run_model(StagingOrderLines, result.lines)
    pandera_s = time.perf_counter() - start
    print(f"tables:     {n:,} orders + {len(lines):,} lines  rejected {len(result.rejections):,}"
          f"  Pandera failures {len(failures)}")
    print(f"  apply_order_rules:        {n / rules_s:,.0f} order rows/s ({rules_s:.2f} s)")
    print(f"  Pandera orders + lines:   {len(result.orders) / pandera_s:,.0f} order rows/s ({pandera_s:.2f} s)")
    print(f"  rules + Pandera:          {n / (rules_s + pandera_s):,.0f} order rows/s")


def run_events(n: int, invalid_share: float) -> None:
    events = make_events(n, invalid_share)
    validate_event(events[0])  # compile the validators outside the timing
    rate, rejected = run(events)
    print(f"dicts:      {n:,} events  {rate:,.0f} rows/s  rejected {rejected:,}")
    raw = [json.dumps(e).encode() for e in events[: max(1, n // 5)]]
    rate_b, rejected_b = run(raw)
    print(f"json bytes: {len(raw):,} events  {rate_b:,.0f} rows/s  rejected {rejected_b:,}")
    verdict = "OK" if rate >= TARGET else "BELOW"
    print(f"target (collector, issue 7): {TARGET:,} events/s -> validator alone on one core: {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--invalid-share", type=float, default=0.1)
    ap.add_argument("--orders", type=int, default=1_000_000)
    args = ap.parse_args()
    run_events(args.events, args.invalid_share)
    gc.collect()  # the million event dicts are gone: they would slow the table run's allocations
    run_tables(args.orders)


if __name__ == "__main__":
    main()
