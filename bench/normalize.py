"""Throughput of the normalizers on 1M customer rows and 1M order lines.

    flock /tmp/bench.lock python -m bench.normalize [--rows 1000000]

Generated data with realistic cardinality: emails and phones almost all distinct, created_at
mostly distinct and in mixed formats (ISO 8601 with offsets, day-first dates, epoch seconds,
RFC 2822), a few dozen spellings of countries, statuses and categories. Prints rows/s per table
and the share of time in each normalizer (issue 4 asks for well over 50k rows/s per table).
"""

from __future__ import annotations

import argparse
import random
import time
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pandas as pd
import phonenumbers

from personalization_assets.normalize import (
    convert, display_name, map_lookup, match_key, normalize_countries, normalize_emails, normalize_phones,
    normalize_timezones, parse_timestamps, to_grams, to_minor,
)

FIRST = ["anna", "ANNA", "Björn", "o'neil", "Chloé", "james", "Jim", "Siobhán", "Zofia", "mia", "Noah", "Søren"]
LAST = ["Smith", "müller", "O'BRIEN", "van der berg", "mcdonald", "Nowak", "Kowalski", "Dubois", "Jensen"]
DOMAINS = ["gmail.com", "googlemail.com", "outlook.com", "yahoo.com", "web.de", "orange.fr", "icloud.com",
           "shop-example.co.uk", "mailinator.com", "gmx.net"]
# (spelling as typed, phone region, time zone)
COUNTRIES = [("United Kingdom", "GB", "Europe/London"), ("UK", "GB", "europe/london"), ("EIRE", "IE", "Europe/Dublin"),
             ("Germany", "DE", "Europe/Berlin"), ("de", "DE", "Europe/Berlin"), ("Deutschland", "DE", "Europe/Berlin"),
             ("France", "FR", "Europe/Paris"), ("Sweden", "SE", "Europe/Stockholm"), ("Poland", "PL", "Europe/Warsaw"),
             ("USA", "US", "America/New_York"), ("United States", "US", "America/Chicago"),
             ("Channel Islands", "GB", "Europe/London"), ("Unspecified", "GB", None)]
CURRENCIES = ["EUR", "EUR", "EUR", "GBP", "GBP", "USD", "SEK", "DKK", "PLN", "CHF", "eur"]
CATEGORIES = ["shoes", "Shoes", "footwear", "tops", "T-Shirts", "outerwear", "Jackets", "bottoms", "jeans",
              "accessories", "sports", "Sportswear", "gadgets"]
STATUSES = ["paid", "shipped", "delivered", "Delivered", "cancelled", "canceled", "completed", "processing"]
WEIGHT_UNITS = ["g", "kg", "KG", "lb", "oz"]


def _phone_templates() -> dict[str, list[str]]:
    out = {}
    for _, region, _ in COUNTRIES:
        number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        out[region] = [phonenumbers.format_number(number, f) for f in (
            phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
            phonenumbers.PhoneNumberFormat.NATIONAL)]
    return out


def _randomize_tail(template: str, rng: random.Random, digits: int = 6) -> str:
    chars = list(template)
    positions = [i for i, c in enumerate(chars) if c.isdigit()][-digits:]
    for i in positions:
        chars[i] = "0123456789"[rng.randrange(10)]
    return "".join(chars)


def _timestamp_text(when: datetime, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.6:
        return when.astimezone(timezone(timedelta(hours=rng.choice([0, 1, 2, -5])))).isoformat()
    if roll < 0.8:
        return when.strftime("%d/%m/%Y %H:%M")
    if roll < 0.9:
        return str(int(when.timestamp()))
    return format_datetime(when)


def customers(n: int, seed: int = 7) -> pd.DataFrame:
    rng = random.Random(seed)
    templates = _phone_templates()
    start = datetime(2023, 1, 1, tzinfo=timezone.utc)
    rows = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        country, region, tz = rng.choice(COUNTRIES)
        local = f"{first}.{last}{i}".replace(" ", "").replace("'", "")
        if rng.random() > 0.01:  # people type "bjorn" for Björn; internationalized mailboxes are rare
            local = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode()
        if rng.random() < 0.05:
            local += "+news"
        email = f"{local}@{rng.choice(DOMAINS)}" if rng.random() > 0.01 else f"{local}@@broken"
        phone = _randomize_tail(rng.choice(templates[region]), rng) if rng.random() > 0.03 else None
        when = start + timedelta(seconds=rng.randrange(2 * 365 * 86400))
        rows.append((first, last, email.upper() if rng.random() < 0.05 else email, phone, country, tz,
                     _timestamp_text(when, rng)))
    return pd.DataFrame(rows, columns=["first_name", "last_name", "email", "phone", "country", "timezone",
                                       "created_at"])


def order_lines(n: int, seed: int = 11) -> pd.DataFrame:
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=timezone.utc)
    prices = [f"{rng.randrange(100, 20000) / 100:.2f}" for _ in range(800)] + ["1,234.50", "free"]
    rows = []
    for _ in range(n):
        when = start + timedelta(seconds=rng.randrange(3 * 365 * 86400))
        offset = timezone(timedelta(hours=rng.choice([0, 1, 2, -5])))
        rows.append((rng.choice(prices), rng.choice(CURRENCIES), when.astimezone(offset).isoformat(),
                     rng.choice(CATEGORIES), rng.choice(STATUSES), str(rng.randrange(50, 3000)),
                     rng.choice(WEIGHT_UNITS)))
    return pd.DataFrame(rows, columns=["unit_price", "currency", "created_at", "category", "status", "weight",
                                       "weight_unit"])


def _timed(steps: list[tuple[str, Callable[[], object]]]) -> dict[str, float]:
    spent = {}
    for name, step in steps:
        t0 = time.perf_counter()
        step()
        spent[name] = time.perf_counter() - t0
    return spent


def normalize_customers(df: pd.DataFrame) -> dict[str, float]:
    return _timed([
        ("display_name (first, last)", lambda: (display_name(df["first_name"]), display_name(df["last_name"]))),
        ("match_key (first, last)", lambda: (match_key(df["first_name"]), match_key(df["last_name"]))),
        ("normalize_emails", lambda: normalize_emails(df["email"])),
        ("normalize_countries", lambda: df.__setitem__("iso", normalize_countries(df["country"])["country"])),
        ("normalize_phones", lambda: normalize_phones(df["phone"], df["iso"])),
        ("parse_timestamps (day_first)", lambda: parse_timestamps(df["created_at"], day_first=True)),
        ("normalize_timezones", lambda: normalize_timezones(df["timezone"])),
    ])


def normalize_lines(df: pd.DataFrame) -> dict[str, float]:
    return _timed([
        ("to_minor", lambda: df.__setitem__("minor", to_minor(df["unit_price"], df["currency"])["amount_minor"])),
        ("parse_timestamps (ISO)", lambda: df.__setitem__(
            "ts", parse_timestamps(df["created_at"], day_first=False)["ts"])),
        ("convert to EUR", lambda: convert(df["minor"], df["currency"].str.upper(), df["ts"], to="EUR")),
        ("map_lookup (category, status)", lambda: (map_lookup(df["category"], "product_categories"),
                                                   map_lookup(df["status"], "order_statuses"))),
        ("to_grams", lambda: to_grams(df["weight"], df["weight_unit"])),
    ])


def report(table: str, rows: int, spent: dict[str, float]) -> None:
    total = sum(spent.values())
    print(f"\n{table}: {rows:,} rows in {total:.1f} s = {rows / total:,.0f} rows/s")
    print(f"| normalizer | seconds | share |\n|---|---:|---:|")
    for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds:.2f} | {seconds / total:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    t0 = time.perf_counter()
    cust, lines = customers(args.rows), order_lines(args.rows)
    print(f"generated {args.rows:,} customers and {args.rows:,} order lines in {time.perf_counter() - t0:.0f} s; "
          f"distinct emails {cust['email'].nunique():,} ({(~cust['email'].map(str.isascii)).mean():.1%} non-ASCII), phones {cust['phone'].nunique():,}, "
          f"created_at {cust['created_at'].nunique():,}")
    report("customers", len(cust), normalize_customers(cust))
    report("order lines", len(lines), normalize_lines(lines))


if __name__ == "__main__":
    main()
