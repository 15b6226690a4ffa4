"""The payloads built in one DuckDB statement equal, byte for byte, those of the Python builder, on
a varied random history (carts priced by the event, by the catalog or not at all; currencies with
0, 2 and 3 decimals; thousands separators; more views than are kept; segments; names that need
stripping, blank or missing; locales with underscores or none) and on the hand-built one."""

import json
import random

import pytest

from personalization_assets.audiences.membership import load_segments, run_segments
from personalization_assets.marts.payloads import build_payloads
from personalization_assets.marts.payloads_sql import write_payloads
from personalization_assets.marts.profiles import build_profiles, write_profiles

from .conftest import NOW, History, ago

NAMES = ["Émile", "  ", None, "\u00a0Zoë\u3000", "\tO'Neil\n", "李", "A \"quoted\" \\ name", "x\u2028y"]
LOCALES = ["de-DE", "fr_FR", "en-GB", None, "", "PT-br", "xx"]


def _history(seed: int) -> History:
    rng = random.Random(seed)
    h = History()
    skus = [f"S{i}" for i in range(15)]
    for i in range(60):
        key = f"c{i:02d}"
        h.customer(key, locale=rng.choice(LOCALES), first_name=rng.choice(NAMES), email_opt_in=i % 9 != 0)
        for _ in range(rng.randrange(0, 5)):
            h.order(key, ago(days=rng.randrange(1, 300)), total_minor=rng.randrange(500, 9_000_000),
                    lines=tuple((rng.choice(skus), rng.choice(["bags", "shoes", "hats"]), rng.randrange(1, 3))
                                for _ in range(rng.randrange(1, 4))))
            h.rows["staging.orders"][-1].update(currency=rng.choice(["GBP", "EUR", "JPY", "USD", "KWD", "SEK"]),
                                                fx_rate=rng.choice([1.0, 0.85, 0.0061, 0.79, 2.97, 0.087]))
        for minutes in rng.sample(range(1, 20_000), rng.randrange(0, 6)):  # distinct times: a defined order
            h.event(key, "Product Viewed", ago(minutes=minutes), sku=rng.choice(skus))
        for _ in range(rng.randrange(0, 4)):
            h.event(key, "Product Added", ago(hours=rng.randrange(1, 48)), sku=rng.choice([*skus, "NEW"]),
                    value_minor=rng.choice([None, 1999, 250_000, 123_456_789, 5]), cart_id=f"cart-{key}")
            h.rows["staging.events"][-1]["currency"] = rng.choice(["GBP", "JPY", "KWD", None, "ZZZ"])
    return h


def _both(duck, reporting: str, chunk: int = 100_000):
    python = build_payloads(duck, reporting_currency=reporting)
    written = write_payloads(duck, reporting_currency=reporting, chunk_customers=chunk)
    sql = duck.query("select * from marts.personalization_payloads order by customer_key")
    assert written == len(sql) == len(python)
    return python, sql


# One chunk, and chunks of 7 customers (the build in bounded memory: a customer's rows are
# computed with those of their chunk only; shared tables once).
@pytest.mark.parametrize("seed, reporting, chunk", [(23, "GBP", 100_000), (5, "EUR", 100_000), (23, "GBP", 7),
                                                    (5, "EUR", 11)])
def test_sql_payloads_are_the_python_bytes(duck, seed, reporting, chunk):
    _history(seed).write(duck)
    write_profiles(duck, build_profiles(duck, NOW).frame)
    run_segments(duck, load_segments(), NOW)
    python, sql = _both(duck, reporting, chunk)
    assert len(python) > 40
    assert list(sql.columns) == list(python.columns)
    for want, got in zip(python.to_dict("records"), sql.to_dict("records")):
        assert got == want, f"{want['customer_key']}:\n{want['payload']}\n{got['payload']}"
    docs = [json.loads(x) for x in sql["payload"]]
    assert any(d["cart"] for d in docs) and any(d["recommendations"] for d in docs) and any(d["segments"] for d in docs)
    assert any(item["price"] and "," in item["price"] for d in docs for item in d["cart"])  # thousands separator
    assert any(item["price"] is None for d in docs for item in d["cart"])  # an unpriced item
    assert {"JPY", "KWD"} <= {item["currency"] for d in docs for item in d["cart"]}
    assert any(d["discount_eligible"] for d in docs)
    tables = set(duck.query("select table_name from duckdb_tables()")["table_name"])
    assert not any(t.startswith("personalization_payloads__") for t in tables)


def test_sql_payloads_without_membership_or_orders(duck):
    h = History()
    h.customer("solo", first_name=" \u2003 ", locale="sv_SE")
    h.customer("duo", first_name="Åsa")
    h.event("duo", "Product Added", ago(hours=2), sku="Q", value_minor=None, cart_id="cart1")
    h.write(duck)
    write_profiles(duck, build_profiles(duck, NOW).frame)
    python = build_payloads(duck, membership=None)
    assert write_payloads(duck, membership=None) == 2
    sql = duck.query("select * from marts.personalization_payloads order by customer_key")
    assert sql.to_dict("records") == python.to_dict("records")
    assert json.loads(sql["payload"].iloc[1])["greeting"] == "Hej"
