"""Write the demo data into the demo's own sources: a CRM SQLite file, the shop API's catalogue
and the event bus. Re-seeding with the same arguments rewrites the same records, so running the
demo twice gives the same tables."""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable

from ..clock import utc_now
from ..heap import collections_paused
from .generator import DemoData, InjectedEffect, generate, orders_as_jsonl
from .manifest import Manifest, read_manifest, write_manifest

APPEND_CHUNK = 25_000  # events appended to the bus at a time (one chunk is written while the next is made)


def seed_demo(data_dir: Path, *, crm_url: str, bus_url: str, seed: int = 7, scale: float = 1.0,
              now: datetime | None = None, say: Callable[[str], None] = lambda line: None,
              keep_events: bool = False, effect: InjectedEffect | None = None) -> DemoData:
    """Generate the demo data as of `now` and load it into the sources, saying each as it is done.
    The same seed, scale and now rewrite the same records (the bus keeps each messageId once), so a
    rerun changes nothing; `manifest.py` decides when a data dir must be started over instead.

    Events go to the bus as they are made; the returned data holds them only with `keep_events`
    (tests compare the warehouse with them), else `events_handed` counts them. `effect` injects a
    known treatment effect (`generator.InjectedEffect`, for the experiment tests)."""
    # The records are a million dicts that live until the sources hold them, with no cycles among
    # them: the collector's passes over them freed nothing and cost ~20 % of the CPU at scale 30.
    with collections_paused():
        return _seed_sources(data_dir, crm_url=crm_url, bus_url=bus_url, seed=seed, scale=scale, now=now, say=say,
                            keep_events=keep_events, effect=effect)


def _seed_sources(data_dir: Path, *, crm_url: str, bus_url: str, seed: int, scale: float, now: datetime | None,
                  say: Callable[[str], None], keep_events: bool, effect: InjectedEffect | None) -> DemoData:
    now = now or utc_now()
    before = read_manifest(data_dir)
    kept = before.injected if before and (before.seed, before.scale, before.now) == (seed, scale, now) else {}
    write_manifest(data_dir, Manifest(seed, scale, now, kept))  # first of all: marks the dir as the demo's
    clock = time.perf_counter()
    from ..bus import open_bus

    bus, events = open_bus(bus_url), []
    appender = _Appender(bus)

    def to_bus(chunk: list[dict]) -> None:  # a transaction (and an fsync) per chunk
        appender.append(chunk)
        if keep_events:
            events.extend(chunk)

    try:
        if effect is None:
            data = generate(seed=seed, scale=scale, anchor=now, on_events=to_bus, chunk=APPEND_CHUNK)
        else:  # the injection reads every event: generate them all, then hand them over the same way
            data = generate(seed=seed, scale=scale, anchor=now, effect=effect)
            for start in range(0, len(data.events), APPEND_CHUNK):
                to_bus(data.events[start:start + APPEND_CHUNK])
            data.events_handed = len(data.events)
        appender.finish()
    finally:
        appender.close()
        bus.close()
    data.events = events

    def done(source: str, what: str) -> None:
        nonlocal clock
        say(f"  {source:<11}{what}  {time.perf_counter() - clock:.1f} s")
        clock = time.perf_counter()

    done("generated", f"{len(data.customers):,} customers, {len(data.orders):,} orders, "
                      f"{data.events_handed:,} events (appended to the bus as they were made)")
    from ..sources.crm import write_customers  # pandas and SQLAlchemy: after the first line

    write_customers(crm_url, data.customers)
    done("crm", "customers written (SQLite)")
    shop = data_dir / "shop"
    shop.mkdir(exist_ok=True)
    (shop / "orders.jsonl").write_text(orders_as_jsonl(data.orders))
    done("shop", "orders written (served by the demo orders API)")
    sent = _email_engagement(data, seed)
    done("email", f"{sent:,} e-mail events (provider export in landing/)")
    return data


class _Appender:
    """Appends chunks of events to the bus in order, in a thread of its own, while the next chunk
    is generated: SQLite's inserts, WAL writes and fsync (~7 s CPU of the ~10 s the appends take at
    scale 30) run without the GIL, so on a second core they can overlap the generator (wall
    time; the CPU is the same). At most `in_flight` chunks wait or are being written: each held
    chunk costs memory (at scale 30 the seeding's peak RSS was 717 MB appending 50k-event chunks
    in line, 922 MB with one 50k chunk in flight, 988 MB with two, 750 MB with one of 25k). A
    failed append is raised by the next `append` or by `finish`."""

    def __init__(self, bus, in_flight: int = 1):
        from concurrent.futures import ThreadPoolExecutor

        self._bus, self._in_flight, self._pending = bus, in_flight, deque()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-bus-append")

    def append(self, chunk: list[dict]) -> None:
        while len(self._pending) >= self._in_flight:
            self._pending.popleft().result()
        self._pending.append(self._thread.submit(self._bus.append, chunk))

    def finish(self) -> None:
        """Wait until every chunk is stored; raises the first failure."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Stop: the append under way completes, those not started are dropped (after a failure)."""
        self._thread.shutdown(wait=True, cancel_futures=True)


def _email_engagement(data: DemoData, seed: int) -> int:
    """Past campaign sends and what followed (opens, clicks, bounces), as a provider export."""
    from ..email_events.demo import email_events, write_demo_export
    from ..email_events.files import landing_dir

    people = (c for c in data.customers if c["customer_id"] not in data.bad_customers)
    sent = 0

    def counted(events):
        nonlocal sent
        for event in events:
            sent += 1
            yield event

    write_demo_export(landing_dir(), counted(email_events(people, seed, now=data.anchor)), seed)
    return sent


def inject_bad_rows(data_dir: Path, *, crm_url: str, bus_url: str, data: DemoData, share: float = 0.08,
                    now: datetime | None = None) -> dict:
    """Break the demo on purpose, so that every kind of check has something to catch:

    - CRM customers with unusable e-mails, `share` of the table (the quarantine-rate check errors
      above 5 %);
    - an order line in a category no lookup knows (the unmapped-values check warns);
    - an event of a type outside the tracking plan, written straight to the bus by a producer that
      bypassed the collector (the blocking Pandera check of staging.events fails, and nothing
      downstream of it runs).
    """
    from ..bus import open_bus
    from ..sources.crm import write_customers

    now = now or utc_now()
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
    injected = {"crm_customers": len(broken), "orders": 1, "events": 1}
    manifest = read_manifest(data_dir)
    if manifest is not None:  # a later plain run knows this data set cannot give a clean run again
        write_manifest(data_dir, Manifest(manifest.seed, manifest.scale, manifest.now, injected))
    return injected
