"""The payload builder without a DataFrame per customer gives byte-for-byte the payloads of the
per-customer pandas loop it replaced (kept here as the reference), on a varied history: carts
priced by the event or by the catalog or not at all, several currencies, more views than are
kept, segments, blank names and customers with nothing."""

import json
import random

import pandas as pd

from personalization_assets.audiences.membership import load_segments, run_segments
from personalization_assets.marts import payloads as p
from personalization_assets.marts.payloads import _rows, build_payloads
from personalization_assets.marts.profiles import build_profiles, write_profiles

from .conftest import NOW, History, ago


def _reference_cart_price(item, catalog: pd.DataFrame, currency, rates):
    if not pd.isna(item.value_minor):
        source = item.currency if isinstance(item.currency, str) else currency
        return p.convert(int(item.value_minor), source, currency, rates)
    if item.sku in catalog.index and not pd.isna(catalog.at[item.sku, "unit_price_minor"]):
        row = catalog.loc[item.sku]
        return p.convert(int(row["unit_price_minor"]), row["currency"], currency, rates)
    return None


def _reference(rows: dict, reporting_currency: str) -> list[dict]:
    """The loop as it was before (commit 53b0c1f), one DataFrame per customer and table."""
    rates = {c: float(r) for c, r in zip(rows["rates"]["currency"], rows["rates"]["fx_rate"])}
    rates.setdefault(reporting_currency, 1.0)
    catalog = rows["catalog"].set_index("sku")
    names = catalog["name"].to_dict()
    by = {k: {key: g for key, g in rows[k].groupby("customer_key")} for k in ("cart", "viewed", "recs", "segments")}
    empty = pd.DataFrame(columns=["sku", "value_minor", "currency", "quantity", "reason", "segment"])
    records = []
    for q in rows["profiles"].itertuples(index=False):
        currency = q.currency if isinstance(q.currency, str) else reporting_currency
        cart = by["cart"].get(q.customer_key, empty)
        segments = set(by["segments"].get(q.customer_key, empty)["segment"])
        tier = p.loyalty_tier(int(q.orders_count), q.m_score, q.f_score)
        items = []
        for c in cart.itertuples(index=False):
            price = _reference_cart_price(c, catalog, currency, rates)
            items.append({"sku": c.sku, "name": names.get(c.sku, c.sku), "quantity": int(c.quantity),
                          "price_minor": price.minor if price else None,
                          "currency": price.currency if price else None, "price": price.display if price else None})
        payload = {
            "greeting": p.greeting(q.first_name, q.locale),
            "first_name": q.first_name.strip() or None if isinstance(q.first_name, str) else None,
            "locale": q.locale or "en", "currency": currency, "cart": items,
            "last_viewed": [{"sku": s, "name": names.get(s, s)}
                            for s in by["viewed"].get(q.customer_key, empty)["sku"]],
            "recommendations": [{"sku": r.sku, "name": names.get(r.sku, r.sku), "reason": r.reason}
                                for r in by["recs"].get(q.customer_key, empty).itertuples(index=False)],
            "loyalty_tier": tier, "discount_eligible": p.discount_eligible(tier, segments),
            "segments": sorted(segments),
        }
        records.append({"customer_key": q.customer_key, "email": q.email, "locale": payload["locale"],
                        "currency": currency, "loyalty_tier": tier, "discount_eligible": payload["discount_eligible"],
                        "payload": json.dumps(payload, ensure_ascii=False, sort_keys=True)})
    return records


def test_payloads_equal_the_per_customer_loop(duck):
    rng = random.Random(23)
    h = History()
    skus = [f"S{i}" for i in range(12)]
    for i in range(40):
        key = f"c{i:02d}"
        h.customer(key, locale=rng.choice(["de-DE", "fr-FR", "en-GB", None]),
                   first_name=rng.choice(["Émile", "  ", None, f"Name{i}"]), email_opt_in=i % 7 != 0)
        for n in range(rng.randrange(0, 4)):
            oid = h.order(key, ago(days=rng.randrange(1, 300)), total_minor=rng.randrange(500, 90_000),
                          lines=tuple((rng.choice(skus), rng.choice(["bags", "shoes", "hats"]), rng.randrange(1, 3))
                                      for _ in range(rng.randrange(1, 4))))
            h.rows["staging.orders"][-1].update(currency=rng.choice(["GBP", "EUR", "JPY", "USD"]),
                                                fx_rate=rng.choice([1.0, 0.85, 0.0061, 0.79]))
        for n in range(rng.randrange(0, 6)):
            h.event(key, "Product Viewed", ago(hours=rng.randrange(1, 400)), sku=rng.choice(skus))
        for n in range(rng.randrange(0, 3)):
            h.event(key, "Product Added", ago(hours=rng.randrange(1, 48)), sku=rng.choice([*skus, "NEW"]),
                    value_minor=rng.choice([None, 1999, 250_000]), cart_id=f"cart-{key}")
    h.write(duck)
    write_profiles(duck, build_profiles(duck, NOW).frame)
    run_segments(duck, load_segments(), NOW)

    built = build_payloads(duck, reporting_currency="GBP")
    expected = _reference(_rows(duck, p.InputTables(), "marts.customer_profiles", "marts.segment_membership"), "GBP")
    assert len(built) == len(expected) > 20
    assert built.to_dict("records") == expected
    docs = [json.loads(x) for x in built["payload"]]
    assert any(d["cart"] for d in docs) and any(d["recommendations"] for d in docs) and any(d["segments"] for d in docs)
    assert len({d["currency"] for d in docs}) >= 3
