"""validate_event throughput over generated events (mixed valid / invalid), dict and JSON-bytes input.

    python bench/validation.py [--events 1000000] [--invalid-share 0.1]

Target (issue 7, the collector): 20,000 events/s on 2 cores including HTTP and the bus, so the
validator alone must run well above that on one core. Prints rows/s per input kind and the verdict.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personalization_assets.quality import validate_event  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--invalid-share", type=float, default=0.1)
    args = ap.parse_args()
    events = make_events(args.events, args.invalid_share)
    validate_event(events[0])  # compile the validators outside the timing
    rate, rejected = run(events)
    print(f"dicts:      {args.events:,} events  {rate:,.0f} rows/s  rejected {rejected:,}")
    raw = [json.dumps(e).encode() for e in events[: max(1, args.events // 5)]]
    rate_b, rejected_b = run(raw)
    print(f"json bytes: {len(raw):,} events  {rate_b:,.0f} rows/s  rejected {rejected_b:,}")
    verdict = "OK" if rate >= TARGET else "BELOW"
    print(f"target (collector, issue 7): {TARGET:,} events/s -> validator alone on one core: {verdict}")


if __name__ == "__main__":
    main()
