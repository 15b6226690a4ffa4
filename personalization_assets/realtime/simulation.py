"""Adversarial cart traffic and the no-fire-after-order check (shared by the tests and `bench/`).

Each cart gets 1-4 start events and, often, an order matched only by cart_id, only by checkout_id,
only by customer, or by all of them. Every event arrives up to `lateness` after its event time,
and the generator pushes orders to the latest allowed arrival while carts arrive at once, re-sends
some events (duplicates), and lets customers share several carts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .events import Event

START_EVENTS = ("Product Added", "Cart Viewed", "Checkout Started")
ORDER_EVENTS = ("Order Completed", "Order Updated")


@dataclass
class CartTruth:
    cart_id: str
    user_id: str
    last_activity: datetime
    order_at: datetime | None = None
    order_received: datetime | None = None


def adversarial_carts(n: int, seed: int, delay: timedelta, lateness: timedelta,
                      start: datetime = datetime(2026, 3, 1, tzinfo=timezone.utc),
                      span: timedelta | None = None) -> tuple[list[Event], dict[str, CartTruth]]:
    rng = random.Random(seed)
    span = span or delay * 4
    events: list[Event] = []
    truth: dict[str, CartTruth] = {}
    users = max(1, int(n * 0.8))  # some customers have two or more carts
    for i in range(n):
        cart, checkout, user = f"cart-{i}", f"co-{i}" if rng.random() < 0.5 else None, f"u{rng.randrange(users)}"
        anon = f"a-{user}"
        base = start + span * rng.random()
        times = sorted(base + delay * 0.9 * rng.random() for _ in range(rng.randint(1, 4)))
        times[0] = base
        adversary = rng.random() < 0.5  # carts arrive at once, the order as late as allowed

        def received(at: datetime, late: bool) -> datetime:
            frac = 0.999 if late else (0.0 if adversary else rng.random())
            return at + lateness * frac

        seen_checkout = False
        for k, at in enumerate(times):
            name = rng.choice(START_EVENTS) if k else "Product Added"
            seen_checkout = seen_checkout or (name == "Checkout Started" and checkout is not None)
            ev = Event(name, at, received(at, False), f"m-{i}-{k}",
                       user if rng.random() < 0.8 else None, anon, cart,
                       checkout if name == "Checkout Started" else None)
            events.append(ev)
            if rng.random() < 0.1:
                events.append(ev)  # redelivered
        t = CartTruth(cart, user, times[-1])
        if rng.random() < 0.6:
            t.order_at = base + delay * 2.5 * rng.random()
            how = rng.choice(("cart", "checkout", "customer", "all"))
            if how == "checkout" and not seen_checkout:
                how = "cart"  # an order can only be matched on a checkout id the shop sent before
            ids = {"cart_id": cart if how in ("cart", "all") else None,
                   "checkout_id": checkout if how in ("checkout", "all") else None}
            uid = user if how in ("customer", "all") or rng.random() < 0.5 else None
            via_anon = how == "customer" and rng.random() < 0.3  # a guest checkout on the device
            t.order_received = received(t.order_at, adversary)
            events.append(Event(rng.choice(ORDER_EVENTS), t.order_at, t.order_received, f"o-{i}",
                                None if via_anon else uid, anon if via_anon else None,
                                ids["cart_id"], ids["checkout_id"], f"ord-{i}"))
        truth[cart] = t
    events.sort(key=lambda e: e.received_at)
    return events, truth


def check_no_fire_after_order(decisions, truth: dict[str, CartTruth], delay: timedelta) -> dict:
    """Violations of: never fire once the order was received; never fire a cart ordered before
    it was due (however late, within lateness, the order came); never fire a cart twice."""
    fired: dict[str, list] = {}
    for d in decisions:
        if d.kind == "fire":
            fired.setdefault(d.group.split(":", 1)[1] if d.group.startswith("cart_id:") else d.group, []).append(d)
    after_order, ordered_before_due, twice = [], [], []
    for cart, fires in fired.items():
        t = truth.get(cart)
        if len(fires) > 1:
            twice.append(cart)
        if t is None or t.order_at is None:
            continue
        if any(f.decided_at >= t.order_received for f in fires):
            after_order.append(cart)
        if t.order_at <= t.last_activity + delay:
            ordered_before_due.append(cart)
    return {"fired": sum(len(v) for v in fired.values()), "after_order": after_order,
            "ordered_before_due": ordered_before_due, "twice": twice}
