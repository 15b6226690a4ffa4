"""The scale benchmark's data: raw tables for N customers generated to Parquet in chunks, then loaded.

`generate` writes `customers`, `orders`, `events` and `email_events` Parquet files, one file per
chunk of rows, with numpy and pyarrow only (no Python loop per row, never the whole set in memory):
each chunk's values come from a seeded generator and from hashes of the customer index, so an order
or event of customer c can name c's e-mail without looking the customer up. `load` copies the files
into `raw.crm_customers`, `raw.shop_orders`, `raw.events` and `raw.email_events` with the schemas
and column formats the raw assets write (`assets/raw.py`, `assets/email_events.py`): text as the
sources hold it, Segment JSON payloads, order lines as JSON. The CRM, orders API, event bus and
e-mail file transports are bypassed (the raw assets are not run).

The data are shaped like the demo's (same names of events, products, statuses, currencies, phone
formats) with a small share of duplicate CRM records (the same person registered twice) for
identity resolution, and a few anonymous events. All sources are dated before `now`; the rows
"arrived" in the last 20 hours (`received_at`, `loaded_at`), so two arrival days cover them, or,
with `arrival_days`, evenly over that many days before `now` (a history to stage day by day).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CHUNK_ROWS = 500_000  # rows per Parquet file; the generator's peak is about 1.3 GB at this size
DUPLICATE_SHARE = 0.02  # CRM records that repeat the previous customer (same e-mail, name, birth date)
ANONYMOUS_SHARE = 0.10  # events sent before the visitor identified (anonymousId only)

FIRST = ["Susan", "James", "Margaret", "Sofia", "Aoife", "Bjorn", "Lukas", "Emma", "Noah", "Olivia", "Liam", "Mia",
         "Lena", "Jonas", "Chloe", "Louis", "Hugo", "Alice", "Oscar", "Freya", "Ella", "Jakub", "Zofia", "Anna",
         "Mateo", "Lucia", "Marco", "Giulia", "Finn", "Ida", "Elias", "Maja", "Tom", "Sara", "Ben", "Laura",
         "Paul", "Nina", "Leon", "Clara", "Adam", "Eva", "Max", "Lea", "Felix", "Hanna", "David", "Julia"]
LAST = ["Martin", "Jensen", "O'Brien", "Kowalski", "Murphy", "Garcia", "Taylor", "Nielsen", "Muller", "Schmidt",
        "Dubois", "Bernard", "Rossi", "Russo", "Nowak", "Wojcik", "Andersson", "Johansson", "Hansen", "Larsen",
        "Smith", "Jones", "Brown", "Wilson", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann",
        "Moreau", "Laurent", "Ferrari", "Esposito", "Lewandowski", "Kaminski", "Karlsson", "Nilsson", "Pedersen",
        "Christensen", "Evans", "Thomas", "Roberts", "Walker", "Keller", "Huber", "Lambert", "Fontaine"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "example.org", "orange.fr", "web.de", "gmx.net", "wp.pl"]
STREETS = ["Station Street", "Mill Street", "Church Street", "High Street", "Park Road", "Main Street"]
CITIES = ["Northtown", "Southtown", "Oldtown", "Newtown", "Eastfield", "Westbury"]
# country as the CRM stores it, time zone, locale, phone prefix, digits after it
COUNTRIES = [("United Kingdom", "Europe/London", "en-GB", "+44 7911 ", 6), ("France", "Europe/Paris", "fr-FR", "+33 6 ", 8),
             ("Germany", "Europe/Berlin", "de-DE", "+49 151 ", 8), ("Switzerland", "Europe/Zurich", "de-CH", "+41 78 ", 7),
             ("Sweden", "Europe/Stockholm", "sv-SE", "+46 70 ", 7), ("Poland", "Europe/Warsaw", "pl-PL", "+48 512 ", 6),
             ("Denmark", "Europe/Copenhagen", "da-DK", "+45 20 ", 6)]
BASE_PRODUCTS = [("100", "Merino Beanie", "accessories", 24.90), ("101", "Leather Belt", "accessories", 39.00),
                 ("200", "Trail Running Shoe", "shoes", 119.00), ("201", "Canvas Sneaker", "shoes", 69.50),
                 ("300", "Rain Jacket", "outerwear", 149.00), ("301", "Down Vest", "outerwear", 99.00),
                 ("400", "Organic Tee", "tops", 19.90), ("401", "Linen Shirt", "tops", 54.00),
                 ("500", "Chino Trousers", "bottoms", 64.00), ("501", "Denim Jeans", "bottoms", 89.00),
                 ("600", "Yoga Mat", "sports", 34.00), ("601", "Water Bottle", "sports", 14.50)]
VARIANTS = 100  # SKU-<base>-<variant>: 1,200 SKUs
STATUSES, STATUS_P = ["delivered", "shipped", "paid", "cancelled"], [0.6, 0.15, 0.13, 0.12]
CURRENCIES = ["EUR", "GBP", "USD", "PLN", "CHF", "SEK", "DKK"]
EVENTS = ["identify", "Product Viewed", "Product Added", "Cart Viewed", "Checkout Started", "Order Completed"]
EVENT_P = [0.08, 0.40, 0.22, 0.12, 0.10, 0.08]
EMAIL_TYPES = ["processed", "delivered", "open", "click", "unsubscribe", "soft_bounce", "bounce", "spamreport"]
EMAIL_P = [0.38, 0.36, 0.17, 0.05, 0.01, 0.015, 0.01, 0.005]

_M = np.uint64(0xFFFFFFFFFFFFFFFF)


def _h(x: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of (x, salt): a stable pseudo-random uint64 per value (customer attributes)."""
    with np.errstate(over="ignore"):
        z = (x.astype(np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)) & _M
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _pick(options: list, index: np.ndarray) -> pa.Array:
    return pc.take(pa.array(options), pa.array(index, type=pa.int64()))


def _s(values) -> pa.Array:
    return pa.array(values).cast(pa.string())


def _cat(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _padded(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(_s(values), width=width, padding="0")


def _ts(seconds: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(seconds, dtype=np.int64) * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _iso(seconds: np.ndarray, zulu: bool = True) -> pa.Array:
    """ISO 8601 text of epoch seconds (numpy's formatter: Arrow's strftime is ten times slower)."""
    text = pa.array(np.datetime_as_string(np.asarray(seconds, dtype="datetime64[s]"), unit="s"))
    return _cat(text, "Z") if zulu else text


def _lower_ascii(options: list[str]) -> list[str]:
    return [o.lower().replace("'", "") for o in options]


def customer_identity(c: np.ndarray) -> dict[str, np.ndarray]:
    """The person behind customer index c (a duplicate record repeats the one before it)."""
    duplicate = (_h(c, 1) % np.uint64(10_000)) < np.uint64(DUPLICATE_SHARE * 10_000)
    person = np.where(duplicate & (c > 0), c - 1, c).astype(np.int64)
    return {"person": person, "duplicate": duplicate,
            "first": (_h(person, 2) % np.uint64(len(FIRST))).astype(np.int64),
            "last": (_h(person, 3) % np.uint64(len(LAST))).astype(np.int64),
            "domain": (_h(person, 4) % np.uint64(len(DOMAINS))).astype(np.int64),
            "country": (_h(person, 5) % np.uint64(len(COUNTRIES))).astype(np.int64)}


def customer_email(c: np.ndarray) -> pa.Array:
    who = customer_identity(c)
    return _cat(_pick(_lower_ascii(FIRST), who["first"]), ".", _pick(_lower_ascii(LAST), who["last"]),
                _s(who["person"]), "@", _pick(DOMAINS, who["domain"]))


def customers_chunk(start: int, stop: int, now_s: int) -> pa.Table:
    c = np.arange(start, stop, dtype=np.int64)
    who = customer_identity(c)
    person = who["person"]
    country = who["country"]
    prefixes = _pick([p for _, _, _, p, _ in COUNTRIES], country)
    digits = np.array([d for *_, d in COUNTRIES])[country]
    number = (_h(c, 6) % np.uint64(10 ** 8)).astype(np.int64)
    trimmed = [pc.utf8_slice_codeunits(pc.utf8_lpad(_s(number), width=8, padding="0"), 8 - d, 8) for d in (6, 7, 8)]
    local = pc.if_else(pa.array(digits == 6), trimmed[0], pc.if_else(pa.array(digits == 7), trimmed[1], trimmed[2]))
    phone = _cat(prefixes, local)
    born = np.datetime64("1950-01-01") + (_h(person, 7) % np.uint64(20_000)).astype("timedelta64[D]")
    created = now_s - (_h(c, 8) % np.uint64(900 * 86_400)).astype(np.int64) - 86_400 * 2
    opt_in = (_h(c, 9) % np.uint64(100)) >= np.uint64(8)
    return pa.table({
        "customer_id": pa.array(1000 + c, pa.int64()),
        "first_name": _pick(FIRST, who["first"]), "last_name": _pick(LAST, who["last"]),
        "email": customer_email(c), "phone": phone,
        "street": _cat(_s((_h(person, 10) % np.uint64(200)).astype(np.int64) + 1), " ",
                       _pick(STREETS, (_h(person, 11) % np.uint64(len(STREETS))).astype(np.int64))),
        "city": _pick(CITIES, (_h(person, 12) % np.uint64(len(CITIES))).astype(np.int64)),
        "postcode": _padded((_h(person, 13) % np.uint64(90_000)).astype(np.int64) + 10_000, 5),
        "country": _pick([n for n, *_ in COUNTRIES], country),
        "birth_date": pa.array(born).cast(pa.string()),
        "timezone": _pick([t for _, t, *_ in COUNTRIES], country),
        "locale": _pick([loc for _, _, loc, *_ in COUNTRIES], country),
        "email_opt_in": pc.if_else(pa.array(opt_in), "1", "0"), "consent_processing": pa.array(["1"] * len(c)),
        "created_at": _ts(created), "updated_at": _ts(created + 86_400),
    })


def _catalogue():
    skus, names, categories, prices = [], [], [], []
    for base, name, category, price in BASE_PRODUCTS:
        for v in range(VARIANTS):
            skus.append(f"SKU-{base}-{v:02d}")
            names.append(name)
            categories.append(category)
            prices.append(price)
    return skus, names, categories, np.array(prices)


def orders_chunk(start: int, stop: int, customers: int, now_s: int, rng: np.random.Generator) -> pa.Table:
    n = stop - start
    o = np.arange(start, stop, dtype=np.int64)
    c = rng.integers(0, customers, n)
    skus, names, categories, prices = _catalogue()
    p1, p2 = rng.integers(0, len(skus), n), rng.integers(0, len(skus), n)
    q1 = rng.integers(1, 3, n)
    two = rng.random(n) < 0.5
    frags = {k: [f'{{"category": "{categories[p]}", "line_no": {k}, "name": "{names[p]}", "quantity": QTY, '
                 f'"sku": "{skus[p]}", "unit_price": "{prices[p]:.2f}"}}' for p in range(len(skus))] for k in (1, 2)}
    line1 = pc.replace_substring(_pick(frags[1], p1), "QTY", "1")
    line1 = pc.if_else(pa.array(q1 == 2), pc.replace_substring(_pick(frags[1], p1), "QTY", "2"), line1)
    line2 = pc.replace_substring(_pick(frags[2], p2), "QTY", "1")
    lines = pc.if_else(pa.array(two), _cat("[", line1, ", ", line2, "]"), _cat("[", line1, "]"))
    total = prices[p1] * q1 + np.where(two, prices[p2], 0.0)
    created = now_s - rng.integers(3_600 * 3, 730 * 86_400, n)
    updated = np.minimum(created + rng.integers(0, 3 * 86_400, n), now_s - 3_600 * 2)
    order_id = _cat("ord-", _padded(o, 9))
    customer_id = _s(1000 + c)
    email = customer_email(c)
    status = _pick(STATUSES, rng.choice(len(STATUSES), n, p=STATUS_P))
    currency = _pick(CURRENCIES, rng.integers(0, len(CURRENCIES), n))
    cents = np.round(total * 100).astype(np.int64)
    total_text = _cat(_s(cents // 100), ".", _padded(cents % 100, 2))  # 2 decimals, as the API sends amounts
    created_text, updated_text = (_cat(_iso(s, zulu=False), "+00:00") for s in (created, updated))
    cart = _cat("cart-", _padded(o, 12))
    checkout = _cat("co-", _padded(o, 12))
    payload = _cat('{"cart_id": "', cart, '", "checkout_id": "', checkout, '", "created_at": "', created_text,
                   '", "currency": "', currency, '", "customer_id": "', customer_id, '", "email": "', email,
                   '", "lines": ', lines, ', "order_id": "', order_id, '", "status": "', status,
                   '", "total": "', total_text, '", "updated_at": "', updated_text, '"}')
    return pa.table({"order_id": order_id, "customer_id": customer_id, "email": email, "status": status,
                     "currency": currency, "total": total_text, "created_at": created_text,
                     "updated_at": updated_text, "cart_id": cart, "checkout_id": checkout, "lines": lines,
                     "payload": payload, "loaded_at": _ts(_arrival(o, "orders", now_s))})


def events_chunk(start: int, stop: int, customers: int, now_s: int, rng: np.random.Generator) -> pa.Table:
    n = stop - start
    e = np.arange(start, stop, dtype=np.int64)
    c = rng.integers(0, customers, n)
    kind = rng.choice(len(EVENTS), n, p=EVENT_P)
    anonymous = (rng.random(n) < ANONYMOUS_SHARE) & (kind == 1)
    skus, names, categories, prices = _catalogue()
    p = rng.integers(0, len(skus), n)
    stamp = now_s - rng.integers(3_600, 365 * 86_400, n)
    ts = _iso(stamp)
    sent = _iso(stamp + 3)
    message_id = _cat(_padded((_h(e, 20) % np.uint64(10 ** 12)).astype(np.int64), 12), "-", _padded(e, 12))
    anon_id = _cat("anon-", _padded((_h(c, 21) % np.uint64(10 ** 12)).astype(np.int64), 12))
    user = _s(1000 + c)
    who = customer_identity(c)
    ctx = _pick([f'{{"library":{{"name":"scale-bench","version":"1"}},"locale":"{loc}","timezone":"{tz}"}}'
                 for _, tz, loc, *_ in COUNTRIES], who["country"])
    product = _pick([f'"product_id":"{skus[i]}","sku":"{skus[i]}","name":"{names[i]}","category":"{categories[i]}",'
                     f'"price":{prices[i]:.1f},"currency":"EUR"' for i in range(len(skus))], p)
    cart = _cat("cart-", _padded(c, 9), "-", _s(rng.integers(0, 4, n)))
    checkout = pc.replace_substring(cart, "cart-", "co-")
    value = _s(np.round(prices[p] * 2, 1))
    props = [
        _cat('"traits":{"email":"', customer_email(c), '","first_name":"', _pick(FIRST, who["first"]), '"}'),
        _cat('"event":"Product Viewed","properties":{', product, "}"),
        _cat('"event":"Product Added","properties":{', product, ',"cart_id":"', cart, '","quantity":1}'),
        _cat('"event":"Cart Viewed","properties":{"cart_id":"', cart, '","products":[{', product, "}]}"),
        _cat('"event":"Checkout Started","properties":{"cart_id":"', cart, '","checkout_id":"', checkout,
             '","currency":"EUR","value":', value, "}"),
        _cat('"event":"Order Completed","properties":{"cart_id":"', cart, '","checkout_id":"', checkout,
             '","currency":"EUR","order_id":"ord-e', _padded(e, 10), '","total":', value, ',"revenue":', value,
             ',"products":[{', product, ',"quantity":2}]}'),
    ]
    body = props[0]
    for k in range(1, len(EVENTS)):
        body = pc.if_else(pa.array(kind == k), props[k], body)
    type_ = pc.if_else(pa.array(kind == 0), "identify", "track")
    user_part = pc.if_else(pa.array(anonymous), "", _cat('"userId":"', user, '",'))
    payload = _cat('{"type":"', type_, '","messageId":"', message_id, '","anonymousId":"', anon_id,
                   '","timestamp":"', ts, '","sentAt":"', sent, '","context":', ctx, ",", user_part, body, "}")
    received = _arrival(e, "events", now_s)
    return pa.table({"message_id": message_id, "bus_offset": pa.array(e + 1, pa.int64()),
                     "received_at": _ts(received), "payload": payload})


_ARRIVAL = {"seconds": 20 * 3_600, "events": 1, "orders": 1}  # the window rows arrive in; rows per table


def _arrival(index: np.ndarray, table: str, now_s: int) -> np.ndarray:
    """Arrival times spread evenly over the window before now, in row order (the bus's order)."""
    window = _ARRIVAL["seconds"]
    return now_s - window + (index * window) // max(1, _ARRIVAL[table])


def email_events_chunk(start: int, stop: int, customers: int, now_s: int, rng: np.random.Generator) -> pa.Table:
    n = stop - start
    e = np.arange(start, stop, dtype=np.int64)
    c = rng.integers(0, customers, n)
    kind = _pick(EMAIL_TYPES, rng.choice(len(EMAIL_TYPES), n, p=EMAIL_P))
    email = customer_email(c)
    event_id = _cat("scale-", _s(e))
    campaign = _pick(["spring_sale", "new_arrivals", "win_back"], rng.integers(0, 3, n))
    message = _cat("bench.", campaign, ".", email)
    stamp = now_s - rng.integers(3_600, 60 * 86_400, n)
    raw_payload = _cat('{"customer_key": null, "email": "', email, '", "event": "', kind,
                       '", "marketing_campaign_id": "', campaign, '", "sg_event_id": "', event_id,
                       '", "sg_message_id": "', message, '", "timestamp": ', _s(stamp), "}")
    clicked = pc.equal(kind, "click")
    bounce = pc.if_else(pc.equal(kind, "bounce"), "hard", pc.if_else(pc.equal(kind, "soft_bounce"), "soft", None))
    return pa.table({
        "event_key": _cat("sendgrid:", event_id), "origin": pa.array(["file:sendgrid_scale.jsonl"] * n),
        "received_at": _ts(np.full(n, now_s)), "provider": pa.array(["sendgrid"] * n), "provider_event_id": event_id,
        "type": kind, "email": email, "customer_key": pa.nulls(n, pa.string()), "campaign_id": campaign,
        "message_id": message, "url": pc.if_else(clicked, "https://shop.example/sale", None),
        "timestamp": _ts(stamp), "bounce_class": bounce, "is_machine": pa.array(rng.random(n) < 0.1),
        "raw_payload": raw_payload})


def counts(customers: int, events_per_customer: float, orders_per_customer: float,
           email_per_customer: float) -> dict[str, int]:
    return {"customers": customers, "orders": round(customers * orders_per_customer),
            "events": round(customers * events_per_customer), "email_events": round(customers * email_per_customer)}


def generate(out: Path, customers: int, now: datetime, *, events_per_customer: float = 10,
             orders_per_customer: float = 1.5, email_per_customer: float = 1.0, chunk_rows: int = CHUNK_ROWS,
             arrival_days: int = 0, seed: int = 23, say=print) -> dict[str, int]:
    """Write the four tables to `out/<table>/part-NNNNN.parquet`, chunk by chunk; rows per table."""
    out.mkdir(parents=True, exist_ok=True)
    now_s = int(now.timestamp())
    sizes = counts(customers, events_per_customer, orders_per_customer, email_per_customer)
    _ARRIVAL.update(seconds=arrival_days * 86_400 if arrival_days else 20 * 3_600,
                    events=sizes["events"], orders=sizes["orders"])
    makers = {"customers": lambda a, b, rng: customers_chunk(a, b, now_s),
              "orders": lambda a, b, rng: orders_chunk(a, b, customers, now_s, rng),
              "events": lambda a, b, rng: events_chunk(a, b, customers, now_s, rng),
              "email_events": lambda a, b, rng: email_events_chunk(a, b, customers, now_s, rng)}
    for t, (table, make) in enumerate(makers.items()):
        started = time.perf_counter()
        (out / table).mkdir(exist_ok=True)
        for i, a in enumerate(range(0, sizes[table], chunk_rows)):
            b = min(a + chunk_rows, sizes[table])
            rng = np.random.default_rng([seed, t, i])
            pq.write_table(make(a, b, rng), out / table / f"part-{i:05d}.parquet", compression="zstd")
        say(f"  generated {table:<13} {sizes[table]:>12,} rows  {time.perf_counter() - started:6.1f} s")
    return sizes


# The raw tables as the raw assets create them (column order and types: `describe raw.<table>`).
RAW_TABLES = {
    "crm_customers": ("customers", "customer_id bigint, first_name varchar, last_name varchar, email varchar, "
                      "phone varchar, street varchar, city varchar, postcode varchar, country varchar, "
                      "birth_date varchar, timezone varchar, locale varchar, email_opt_in varchar, "
                      "consent_processing varchar, created_at timestamptz, updated_at timestamptz"),
    "shop_orders": ("orders", "order_id varchar, customer_id varchar, email varchar, status varchar, currency varchar, "
                    "total varchar, created_at varchar, updated_at varchar, cart_id varchar, checkout_id varchar, "
                    "lines varchar, payload varchar, loaded_at timestamptz"),
    "events": ("events", "message_id varchar, bus_offset bigint, received_at timestamptz, payload varchar"),
    "email_events": ("email_events", "event_key varchar, origin varchar, received_at timestamptz, provider varchar, "
                     "provider_event_id varchar, type varchar, email varchar, customer_key varchar, "
                     "campaign_id varchar, message_id varchar, url varchar, timestamp timestamptz, "
                     "bounce_class varchar, is_machine boolean, raw_payload varchar"),
}


def load(db: Path, parquet: Path, *, memory_limit: str = "2GB", say=print) -> dict[str, int]:
    """Create the raw tables in `db` from the Parquet files (DuckDB streams them: bounded memory)."""
    import duckdb

    rows = {}
    con = duckdb.connect(str(db))
    try:
        con.execute(f"set memory_limit = '{memory_limit}'")
        con.execute("set preserve_insertion_order = true")
        con.execute("create schema if not exists raw")
        for table, (folder, columns) in RAW_TABLES.items():
            started = time.perf_counter()
            con.execute(f"create or replace table raw.{table} ({columns})")
            names = [c.strip().split(" ")[0] for c in columns.split(",")]
            con.execute(f"insert into raw.{table} select {', '.join(names)} "
                        f"from read_parquet('{parquet / folder}/*.parquet')")
            rows[table] = con.execute(f"select count(*) from raw.{table}").fetchone()[0]
            say(f"  loaded    raw.{table:<13} {rows[table]:>12,} rows  {time.perf_counter() - started:6.1f} s")
        con.execute("checkpoint")
    finally:
        con.close()
    return rows


def default_now() -> datetime:
    """The data set's now: the last full hour, so the sources are never dated after the run's clock."""
    from datetime import timezone

    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
