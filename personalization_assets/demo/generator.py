"""Deterministic demo data: CRM customers with realistic duplicates, shop orders and tracking events.

Everything derives from `seed`, `scale` and the `anchor` time, so the same arguments always give
the same records. The generator also returns the truth (who is who, whose cart was abandoned),
which the tests compare the pipeline's output against.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Callable

BASE_CUSTOMERS = 2000

FIRST_NAMES = [
    ("Robert", "Bob"), ("William", "Bill"), ("Elizabeth", "Liz"), ("Katherine", "Kate"),
    ("Margaret", "Maggie"), ("Michael", "Mike"), ("Jennifer", "Jenny"), ("James", "Jim"),
    ("Thomas", "Tom"), ("Alexander", "Alex"), ("Susan", "Sue"), ("Daniel", "Dan"),
    ("Anna", None), ("Sofia", None), ("Lukas", None), ("Emma", None), ("Noah", None),
    ("Olivia", None), ("Mia", None), ("Jonas", None), ("Freja", None), ("Zofia", None),
    ("Søren", None), ("Chloé", None), ("Björn", None), ("Aoife", None), ("Siobhán", None),
]
LAST_NAMES = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Müller", "Schmidt", "Schneider", "Dubois",
    "Martin", "Andersson", "Johansson", "Nielsen", "Jensen", "Kowalski", "Nowak", "O'Brien",
    "Murphy", "Keller", "Meier", "Garcia", "Miller", "Davis", "Wilson", "Moore", "Clark",
]
# (free-text country as CRM users type it, ISO code, currency, timezone, locale, phone prefix:
#  with the 4 digits each person adds, a valid mobile number of the country)
COUNTRIES = [
    ("United Kingdom", "GB", "GBP", "Europe/London", "en-GB", "+44 7911 12"),
    ("EIRE", "IE", "EUR", "Europe/Dublin", "en-IE", "+353 85 212"),
    ("Germany", "DE", "EUR", "Europe/Berlin", "de-DE", "+49 1512 345"),
    ("de", "DE", "EUR", "Europe/Berlin", "de-DE", "+49 1512 355"),
    ("France", "FR", "EUR", "Europe/Paris", "fr-FR", "+33 6 12 34"),
    ("Sweden", "SE", "SEK", "Europe/Stockholm", "sv-SE", "+46 70 123"),
    ("Denmark", "DK", "DKK", "Europe/Copenhagen", "da-DK", "+45 20 12"),
    ("Poland", "PL", "PLN", "Europe/Warsaw", "pl-PL", "+48 512 12"),
    ("Switzerland", "CH", "CHF", "Europe/Zurich", "de-CH", "+41 78 123"),
    ("United States", "US", "USD", "America/New_York", "en-US", "+1 201 555"),
]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "web.de", "orange.fr", "example.org"]
PRODUCTS = [
    # sku, name, category, price in EUR
    ("SKU-100", "Merino Beanie", "accessories", "24.90"),
    ("SKU-101", "Leather Belt", "accessories", "39.00"),
    ("SKU-200", "Trail Running Shoe", "shoes", "119.00"),
    ("SKU-201", "Canvas Sneaker", "shoes", "69.50"),
    ("SKU-300", "Rain Jacket", "outerwear", "149.00"),
    ("SKU-301", "Down Vest", "outerwear", "99.00"),
    ("SKU-400", "Organic Tee", "tops", "19.90"),
    ("SKU-401", "Linen Shirt", "tops", "54.00"),
    ("SKU-500", "Chino Trousers", "bottoms", "64.00"),
    ("SKU-501", "Denim Jeans", "bottoms", "89.00"),
    ("SKU-600", "Yoga Mat", "sports", "34.00"),
    ("SKU-601", "Water Bottle", "sports", "14.50"),
]
FX_FROM_EUR = {"EUR": "1", "GBP": "0.85", "USD": "1.08", "SEK": "11.5", "DKK": "7.46",
               "PLN": "4.3", "CHF": "0.95"}
STATUSES = ["paid", "shipped", "delivered", "delivered", "delivered", "cancelled"]


@dataclass
class DemoData:
    anchor: datetime
    customers: list[dict]
    orders: list[dict]
    events: list[dict]
    # truth, never shown to the pipeline
    person_of_customer: dict[int, int] = field(default_factory=dict)
    abandoned_carts: dict[str, int] = field(default_factory=dict)  # cart_id -> person
    bad_customers: set[int] = field(default_factory=set)
    bad_orders: set[str] = field(default_factory=set)
    bad_events: set[str] = field(default_factory=set)
    # with `generate(effect=...)`: the trigger fires of the abandoned carts, each with its arm
    # (treated = sent) and whether the person then ordered (see `_inject_effect`)
    fires: list[dict] = field(default_factory=list)
    # with `generate(on_events=...)`: how many events were handed over (`events` is then empty)
    events_handed: int = 0

    @property
    def persons(self) -> int:
        return len(set(self.person_of_customer.values()))


@dataclass(frozen=True)
class InjectedEffect:
    """A known treatment effect in a randomized trigger holdout: of the customers whose abandoned
    cart fires `trigger`, those the declared holdouts let through (treated: sent) order afterwards
    with probability `base + lift`, those held out (control) with probability `base`."""

    trigger: str = "cart_abandonment"
    base: float = 0.10
    lift: float = 0.30
    delay: timedelta = timedelta(hours=1, minutes=2)  # the trigger's delay + allowed lateness


def generate(seed: int = 7, scale: float = 1.0, anchor: datetime | None = None,
             effect: InjectedEffect | None = None, on_events: Callable[[list[dict]], None] | None = None,
             chunk: int = 50_000) -> DemoData:
    """Build the demo data set. `scale=1` is about 2,000 customers; the anchor is "now".

    `effect` (opt-in, off for the demo) adds the orders of a known treatment effect after the
    abandoned carts' fires (`_inject_effect`); every other record stays the same.

    `on_events` takes the events as they are made, `chunk` or more at a time and in order, and
    `events` stays empty (`events_handed` counts them): at scale 30 the 858k events held at once
    were over 1 GB. The same events in the same order as without it."""
    if effect is not None and on_events is not None:
        raise ValueError("an injected effect reads every event: generate them all, without on_events")
    rng = random.Random(seed)
    anchor = (anchor or datetime.now(timezone.utc)).replace(minute=0, second=0, microsecond=0)
    data = DemoData(anchor=anchor, customers=[], orders=[], events=[])
    n_persons = max(20, int(BASE_CUSTOMERS * scale * 0.9))
    persons = [_person(rng, p, anchor) for p in range(n_persons)]
    for person in persons:
        _add_crm_records(rng, data, person)
    for person in persons:
        _add_shopping(rng, data, person)
        if on_events is not None and len(data.events) >= chunk:
            _hand_over(data, on_events)
    _add_bad_records(rng, data)
    if effect is not None:
        _inject_effect(random.Random(f"{seed}:effect:{effect.trigger}"), data, persons, effect)
    if on_events is not None and data.events:
        _hand_over(data, on_events)
    data.customers.sort(key=lambda c: c["customer_id"])
    return data


def _hand_over(data: DemoData, on_events: Callable[[list[dict]], None]) -> None:
    on_events(data.events)
    data.events_handed += len(data.events)
    data.events = []


def _inject_effect(rng: random.Random, data: DemoData, persons: list[dict], effect: InjectedEffect) -> None:
    """Each abandoned cart fires `effect.trigger` `effect.delay` after its last event; the arm is
    the one the sender's holdout gate will give (a hash of the golden customer_key, which identity
    derives from the person's smallest CRM record id); the person then orders, or not, between
    the fire and now. Its own random stream: the rest of the data set is unchanged."""
    from ..experiments.assign import CONTROL, assign_arm
    from ..experiments.holdouts import covering, declared_experiments
    from ..identity.keys import key_for

    experiments = covering(declared_experiments(), "trigger", effect.trigger)
    by_pid = {p["pid"]: p for p in persons}
    last_event: dict[str, str] = {}
    for e in data.events:
        cart = (e.get("properties") or {}).get("cart_id")
        if cart in data.abandoned_carts:
            last_event[cart] = max(last_event.get(cart, ""), e["timestamp"])
    for cart, pid in sorted(data.abandoned_carts.items()):
        person = by_pid[pid]
        user_id = str(person["customer_ids"][0])
        key = key_for(min(f"crm:{c}" for c in person["customer_ids"]))
        fired = datetime.fromisoformat(last_event[cart].replace("Z", "+00:00")) + effect.delay
        treated = all(assign_arm(e, key) != CONTROL for e in experiments)
        converted = rng.random() < effect.base + effect.lift * treated
        if converted:
            latest = data.anchor - timedelta(minutes=30)  # the order session, with its events, ends before now
            start = fired + timedelta(seconds=rng.uniform(300, max(301.0, (latest - fired).total_seconds())))
            _order_session(rng, data, person, user_id, start)
            data.orders[-1].update(customer_id=user_id, status="paid")  # a purchase, by the person, no guest
        data.fires.append({"fire_key": f"{effect.trigger}|cart_id:{cart}|{fired.isoformat()}", "trigger": effect.trigger,
                           "customer_id": user_id, "customer_key": key, "cart": cart, "decided_at": fired,
                           "treated": treated, "converted": converted})


def _person(rng: random.Random, pid: int, anchor: datetime) -> dict:
    first, nick = rng.choice(FIRST_NAMES)
    country = rng.choice(COUNTRIES)
    last = rng.choice(LAST_NAMES)
    domain = rng.choice(DOMAINS)
    local = f"{_ascii(first).lower()}.{_ascii(last).lower()}{pid}"
    created = anchor - timedelta(days=rng.randint(30, 700), minutes=rng.randint(0, 1439))
    return {
        "pid": pid, "first": first, "nick": nick, "last": last, "country": country,
        "email": f"{local}@{domain}", "domain": domain,
        "phone": f"{country[5]}{pid % 1000:03d}{rng.randint(0, 9)}",
        "postcode": f"{rng.randint(10000, 99999)}", "city": rng.choice(["North", "South", "Old"]) + "town",
        "street": f"{rng.randint(1, 200)} {rng.choice(['High', 'Mill', 'Church', 'Station'])} Street",
        "birth": datetime(rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28)),
        "created": created,
        "opt_in": rng.random() < 0.85,
        "consent": rng.random() < 0.95,
        "anon": random_uuid(rng),
        "customer_ids": [],
    }


def random_uuid(rng: random.Random) -> str:
    """`str(uuid.UUID(int=rng.getrandbits(128)))` without building the UUID object (a million of
    them at scale 30): the same string from the same draw."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ascii(text: str) -> str:
    return text.replace("ø", "o").replace("é", "e").replace("ö", "o").replace("á", "a").replace("'", "")


def _crm_row(person: dict, customer_id: int, **overrides) -> dict:
    country = person["country"]
    row = {
        "customer_id": customer_id,
        "first_name": person["first"],
        "last_name": person["last"],
        "email": person["email"],
        "phone": person["phone"],
        "street": person["street"],
        "city": person["city"],
        "postcode": person["postcode"],
        "country": country[0],
        "birth_date": person["birth"].strftime("%Y-%m-%d"),
        "timezone": country[3],
        "locale": country[4],
        "email_opt_in": person["opt_in"],
        "consent_processing": person["consent"],
        "created_at": person["created"],
        "updated_at": person["created"] + timedelta(days=1),
    }
    row.update(overrides)
    return row


def _add_crm_records(rng: random.Random, data: DemoData, person: dict) -> None:
    cid = 1000 + len(data.customers)
    data.customers.append(_crm_row(person, cid))
    person["customer_ids"].append(cid)
    data.person_of_customer[cid] = person["pid"]
    if rng.random() >= 0.11:
        return
    # A duplicate record of the same person, typed differently by another team or channel.
    dup_id = 1000 + len(data.customers) + 500_000
    variant = rng.choice(["case", "nickname", "typo", "missing", "gmail"])
    email, first, last, phone = person["email"], person["first"], person["last"], person["phone"]
    if variant == "case":
        email, first, last = email.upper(), first.upper(), f"  {last.lower()} "
    elif variant == "nickname" and person["nick"]:
        first = person["nick"]
    elif variant == "typo":
        cut = rng.randrange(1, len(last))
        last = last[:cut] + last[cut] + last[cut:]  # doubled letter
    elif variant == "missing":
        phone = None
    elif variant == "gmail" and person["domain"] == "gmail.com":
        local = email.split("@")[0]
        email = f"{local.replace('.', '')}+shop@gmail.com"
    updated = person["created"] + timedelta(days=rng.randint(2, 25))
    data.customers.append(
        _crm_row(person, dup_id, email=email, first_name=first, last_name=last, phone=phone,
                 created_at=updated - timedelta(days=1), updated_at=updated)
    )
    person["customer_ids"].append(dup_id)
    data.person_of_customer[dup_id] = person["pid"]


def _add_shopping(rng: random.Random, data: DemoData, person: dict) -> None:
    """Sessions of Segment e-commerce v2 events; some end in an order, some in an abandoned cart."""
    anchor = data.anchor
    user_id = str(person["customer_ids"][0])
    _event(data, rng, person, "identify", None, person["created"], user_id=user_id,
           traits={"email": person["email"], "first_name": person["first"]})
    for _ in range(rng.choice([0, 1, 1, 2, 3, 5])):
        start = anchor - timedelta(days=rng.uniform(1, 400))
        _order_session(rng, data, person, user_id, start)
    roll = rng.random()
    if roll < 0.12:  # abandoned a cart within the last two days
        start = anchor - timedelta(hours=rng.uniform(3, 44))
        cart_id = _cart(rng, data, person, user_id, start)
        data.abandoned_carts[cart_id] = person["pid"]
    elif roll < 0.25:  # browsed only
        start = anchor - timedelta(hours=rng.uniform(3, 70))
        for i, product in enumerate(rng.sample(PRODUCTS, 2)):
            _event(data, rng, person, "track", "Product Viewed", start + timedelta(minutes=i),
                   user_id=user_id, properties=_product_props(product, "EUR"))


def _cart(rng: random.Random, data: DemoData, person: dict, user_id: str, start: datetime,
          products: list | None = None) -> str:
    cart_id = f"cart-{rng.getrandbits(128):032x}"[:17]
    products = products or rng.sample(PRODUCTS, rng.randint(1, 3))
    for i, product in enumerate(products):
        when = start + timedelta(minutes=2 * i)
        _event(data, rng, person, "track", "Product Viewed", when, anonymous_only=i == 0,
               user_id=user_id, properties=_product_props(product, "EUR"))
        _event(data, rng, person, "track", "Product Added", when + timedelta(minutes=1),
               user_id=user_id, properties={**_product_props(product, "EUR"), "cart_id": cart_id,
                                             "quantity": 1})
    _event(data, rng, person, "track", "Cart Viewed", start + timedelta(minutes=10),
           user_id=user_id, properties={"cart_id": cart_id,
                                        "products": [_product_props(p, "EUR") for p in products]})
    return cart_id


def _order_session(rng: random.Random, data: DemoData, person: dict, user_id: str,
                   start: datetime) -> None:
    products = rng.sample(PRODUCTS, rng.randint(1, 3))
    cart_id = _cart(rng, data, person, user_id, start, products)
    checkout_id = f"co-{cart_id[5:]}"
    currency = person["country"][2]
    order_id = f"ord-{len(data.orders) + 1:07d}"
    lines, total = [], Decimal("0")
    for n, product in enumerate(products, start=1):
        qty = rng.choice([1, 1, 1, 2])
        unit = _price(product, currency)
        lines.append({"line_no": n, "sku": product[0], "name": product[1], "category": product[2],
                      "quantity": qty, "unit_price": str(unit)})
        total += unit * qty
    placed = start + timedelta(minutes=15)
    guest = rng.random() < 0.05
    order = {
        "order_id": order_id,
        "customer_id": None if guest else str(rng.choice(person["customer_ids"])),
        "email": person["email"],
        "status": rng.choice(STATUSES),
        "currency": currency,
        "total": str(total),
        "created_at": _iso_with_offset(placed, rng),
        # later status changes, but never after "now": a source never reports the future
        "updated_at": _iso_with_offset(min(placed + timedelta(hours=rng.randint(0, 48)), data.anchor), rng),
        "cart_id": cart_id,
        "checkout_id": checkout_id,
        "lines": lines,
    }
    data.orders.append(order)
    props = {"cart_id": cart_id, "checkout_id": checkout_id, "currency": currency}
    _event(data, rng, person, "track", "Checkout Started", placed - timedelta(minutes=3),
           user_id=user_id, properties={**props, "value": float(total)})
    _event(data, rng, person, "track", "Order Completed", placed, user_id=user_id,
           properties={**props, "order_id": order_id, "total": float(total),
                       "revenue": float(total),
                       "products": [{"product_id": l["sku"], "sku": l["sku"], "name": l["name"],
                                     "category": l["category"], "price": float(l["unit_price"]),
                                     "quantity": l["quantity"]} for l in lines]})


# A price and the properties of a product depend only on (sku, currency): made once each, not for
# each of the ~900k events and order lines at scale 30 (Decimal arithmetic was ~2 s of the seeding).
_PRICES: dict[tuple[str, str], Decimal] = {}
_PROPS: dict[tuple[str, str], dict] = {}


def _price(product: tuple, currency: str) -> Decimal:
    key = (product[0], currency)
    price = _PRICES.get(key)
    if price is None:
        price = _PRICES[key] = (Decimal(product[3]) * Decimal(FX_FROM_EUR[currency])).quantize(Decimal("0.01"))
    return price


def _product_props(product: tuple, currency: str) -> dict:
    """A new dict each call (callers extend it), copied from the one made for (sku, currency)."""
    key = (product[0], currency)
    props = _PROPS.get(key)
    if props is None:
        props = _PROPS[key] = {"product_id": product[0], "sku": product[0], "name": product[1],
                               "category": product[2], "price": float(_price(product, currency)),
                               "currency": currency}
    return props.copy()


def _iso_with_offset(when: datetime, rng: random.Random) -> str:
    """Shops report local times with mixed offsets; normalization brings them to UTC."""
    return when.astimezone(_OFFSETS[rng.choice(_OFFSET_HOURS)]).isoformat()


_OFFSET_HOURS = [0, 1, 2, -5]
_OFFSETS = {h: timezone(timedelta(hours=h)) for h in _OFFSET_HOURS}


def _event(data: DemoData, rng: random.Random, person: dict, kind: str, name: str | None,
           when: datetime, *, user_id: str, anonymous_only: bool = False, properties=None,
           traits=None) -> dict:
    message_id = random_uuid(rng)
    sent = when + timedelta(seconds=rng.uniform(0.1, 5))
    event = {
        "type": kind,
        "messageId": message_id,
        "anonymousId": person["anon"],
        "timestamp": when.isoformat().replace("+00:00", "Z"),
        "sentAt": sent.isoformat().replace("+00:00", "Z"),
        "context": {"library": {"name": "demo-seeder", "version": "1"},
                    "locale": person["country"][4], "timezone": person["country"][3]},
    }
    if not anonymous_only:
        event["userId"] = user_id
    if name:
        event["event"] = name
    if kind == "identify":
        event["traits"] = traits or {}
    else:
        event["properties"] = properties or {}
    data.events.append(event)
    return event


def _add_bad_records(rng: random.Random, data: DemoData) -> None:
    """A handful of broken records, so the quarantine has something real to show."""
    bad = _crm_row(_person(rng, 999_999, data.anchor), 999_001, email="not-an-email")
    data.customers.append(bad)
    data.bad_customers.add(999_001)
    data.person_of_customer[999_001] = 999_999
    template = dict(data.orders[0]) if data.orders else None
    if template:
        negative = {**template, "order_id": "ord-bad-negative", "total": "-10.00"}
        unknown_currency = {**template, "order_id": "ord-bad-currency", "currency": "ZZZ"}
        data.orders += [negative, unknown_currency]
        data.bad_orders |= {"ord-bad-negative", "ord-bad-currency"}
    no_ids = {"type": "track", "event": "Product Viewed", "messageId": "bad-no-identity",
              "timestamp": data.anchor.isoformat(), "properties": {}}
    future = {"type": "track", "event": "Product Viewed", "messageId": "bad-future",
              "userId": "1000", "timestamp": (data.anchor + timedelta(days=30)).isoformat(),
              "properties": {}}
    data.events += [no_ids, future]
    data.bad_events |= {"bad-no-identity", "bad-future"}


def orders_as_jsonl(orders: list[dict]) -> str:
    encode = json.JSONEncoder(sort_keys=True).encode  # json.dumps(o, sort_keys=True), one encoder for all
    return "".join(encode(o) + "\n" for o in orders)
