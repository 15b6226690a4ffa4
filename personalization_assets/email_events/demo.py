"""Demo engagement: SendGrid-format events for the demo's customers, written as an export file to
the landing folder, so the demo exercises the same path as real data (file -> sensor -> staging)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator, Mapping

CAMPAIGNS = ("spring_sale", "new_arrivals", "win_back")


def generate_email_events(customers: Iterable[Mapping], seed: int = 7, *,
                          now: datetime | None = None, days: int = 30) -> list[dict]:
    """One campaign send per customer with an e-mail per campaign, and what followed: delivery or
    bounce (2 % hard, 2 % soft), opens (a third of them Apple MPP machine opens), clicks, and a few
    unsubscribes and spam reports. Deterministic for a seed."""
    return list(email_events(customers, seed, now=now, days=days))


def email_events(customers: Iterable[Mapping], seed: int = 7, *,
                 now: datetime | None = None, days: int = 30) -> Iterator[dict]:
    """`generate_email_events` one event at a time (the demo writes them to a file as they come)."""
    rng = random.Random(seed)
    now = now or datetime.now(timezone.utc).replace(microsecond=0)
    events: list[dict] = []  # the current customer's
    made = 0

    def add(kind: str, email: str, at: datetime, campaign: str, customer: str | None, **extra) -> None:
        events.append({"event": kind, "email": email, "timestamp": int(at.timestamp()),
                       "sg_event_id": f"demo-{seed}-{made + len(events)}",
                       "sg_message_id": f"demo.{campaign}.{email}",
                       "marketing_campaign_id": campaign, "customer_key": customer, **extra})

    for customer in customers:
        email = customer.get("email")
        if not email or "@" not in str(email):
            continue
        key = customer.get("customer_key")
        for n, campaign in enumerate(CAMPAIGNS):
            sent = now - timedelta(days=days * (len(CAMPAIGNS) - n) / len(CAMPAIGNS), minutes=rng.randint(0, 600))
            add("processed", email, sent, campaign, key)
            roll = rng.random()
            if roll < 0.02:
                add("bounce", email, sent + timedelta(minutes=1), campaign, key, type="bounce",
                    reason="550 5.1.1 user unknown", bounce_classification="Invalid Address")
                break  # a hard-bounced address is not mailed again
            if roll < 0.04:
                add("bounce", email, sent + timedelta(minutes=1), campaign, key, type="blocked",
                    reason="452 4.2.2 mailbox full", bounce_classification="Technical")
                continue
            delivered = sent + timedelta(minutes=rng.randint(1, 5))
            add("delivered", email, delivered, campaign, key, response="250 OK")
            if rng.random() < 0.45:
                machine = rng.random() < 0.33
                opened = delivered + timedelta(minutes=1 if machine else rng.randint(5, 2000))
                add("open", email, opened, campaign, key, sg_machine_open=machine)
                if not machine and rng.random() < 0.35:
                    add("click", email, opened + timedelta(minutes=rng.randint(0, 30)), campaign, key,
                        url=f"https://shop.example.com/{campaign}")
            if rng.random() < 0.015:
                add("unsubscribe", email, delivered + timedelta(hours=rng.randint(1, 48)), campaign, key)
            elif rng.random() < 0.004:
                add("spamreport", email, delivered + timedelta(hours=rng.randint(1, 48)), campaign, key)
        made += len(events)
        yield from events
        events.clear()


def write_demo_export(folder: Path, events: Iterable[dict], seed: int = 7) -> Path:
    """Write the events as a SendGrid JSONL export into the landing folder (atomically), a line
    at a time: an iterator of events is never held whole."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"sendgrid_demo_{seed}.jsonl"
    tmp = folder / f".{target.name}.part"
    with tmp.open("w") as f:
        encode = json.JSONEncoder(sort_keys=True).encode  # json.dumps(e, sort_keys=True), one encoder for all
        f.writelines(encode(e) + "\n" for e in events)
    tmp.replace(target)
    return target
