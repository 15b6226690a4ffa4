"""Write the demo data into the demo's own sources: a CRM SQLite file, the shop API's catalogue
and the event bus. Re-seeding with the same arguments rewrites the same records, so running the
demo twice gives the same tables."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from ..sources.crm import write_customers
from .generator import DemoData, generate, orders_as_jsonl

MANIFEST = "demo.json"


def seed_demo(data_dir: Path, *, crm_url: str, bus_url: str, seed: int = 7, scale: float = 1.0,
              fresh: bool = False) -> DemoData:
    """Generate (or regenerate identically) the demo data and load it into the sources."""
    from ..bus import open_bus

    manifest_path = data_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    if manifest and (fresh or manifest.get("seed") != seed or manifest.get("scale") != scale):
        shutil.rmtree(data_dir)  # another data set lives here: start clean rather than mix them
        manifest = None
    data_dir.mkdir(parents=True, exist_ok=True)
    anchor = datetime.fromisoformat(manifest["anchor"]) if manifest else None
    data = generate(seed=seed, scale=scale, anchor=anchor)

    write_customers(crm_url, data.customers)
    shop = data_dir / "shop"
    shop.mkdir(exist_ok=True)
    (shop / "orders.jsonl").write_text(orders_as_jsonl(data.orders))
    bus = open_bus(bus_url)
    try:
        for start in range(0, len(data.events), 5000):
            bus.append(data.events[start:start + 5000])
    finally:
        bus.close()
    _email_engagement(data, seed)
    manifest_path.write_text(json.dumps(
        {"seed": seed, "scale": scale, "anchor": data.anchor.isoformat()}, indent=2))
    return data


def _email_engagement(data: DemoData, seed: int) -> None:
    """Past campaign sends and what followed (opens, clicks, bounces), as a provider export."""
    from ..email_events.demo import generate_email_events, write_demo_export
    from ..email_events.files import landing_dir

    people = [c for c in data.customers if c["customer_id"] not in data.bad_customers]
    write_demo_export(landing_dir(), generate_email_events(people, seed, now=data.anchor), seed)


def inject_bad_rows(data_dir: Path, *, crm_url: str, bus_url: str, data: DemoData, share: float = 0.08) -> dict:
    """Break the demo on purpose, so that every kind of check has something to catch:

    - CRM customers with unusable e-mails, `share` of the table (the quarantine-rate check errors
      above 5 %);
    - an order line in a category no lookup knows (the unmapped-values check warns);
    - an event of a type outside the tracking plan, written straight to the bus by a producer that
      bypassed the collector (the blocking Pandera check of staging.events fails, and nothing
      downstream of it runs).
    """
    from datetime import timezone

    from ..bus import open_bus

    now = datetime.now(timezone.utc)
    template = dict(data.customers[0])
    broken = [{**template, "customer_id": 990_000 + i, "email": f"broken-{i}.example.org",
               "updated_at": now} for i in range(int(len(data.customers) * share))]
    write_customers(crm_url, broken)
    order = dict(data.orders[0])
    line = {**order["lines"][0], "category": "Garden Gnomes"}
    odd = {**order, "order_id": "ord-unmapped-category", "lines": [line], "updated_at": now.isoformat(),
           "total": str(Decimal(str(line["unit_price"])) * line["quantity"])}
    with (data_dir / "shop" / "orders.jsonl").open("a") as f:
        f.write(orders_as_jsonl([odd]))
    bus = open_bus(bus_url)
    try:
        bus.append([{"type": "purchase", "event": "Order Completed", "userId": "1000",
                     "messageId": "bad-type-outside-tracking-plan", "timestamp": now.isoformat()}])
    finally:
        bus.close()
    return {"crm_customers": len(broken), "orders": 1, "events": 1}
