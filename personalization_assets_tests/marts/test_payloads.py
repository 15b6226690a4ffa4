"""Payloads and the template preview, from a hand-built history in DuckDB."""

import json

import pytest

from personalization_assets.audiences.membership import load_segments, run_segments
from personalization_assets.marts import payloads
from personalization_assets.marts.payloads import build_payloads
from personalization_assets.marts.profiles import build_profiles, write_profiles
from personalization_assets.marts.render import preview_markdown, render

from .conftest import NOW, History, ago


@pytest.fixture
def built(duck):
    h = History()
    h.customer("anna", locale="de-DE", first_name="<b>Anna</b>")
    h.customer("ben", first_name="  ")
    h.customer("cleo")
    h.customer("gone", email_opt_in=False)
    h.order("anna", ago(days=100), lines=(("A", "bags", 1), ("B", "bags", 1)))
    h.order("ben", ago(days=90), lines=(("A", "bags", 1), ("C", "shoes", 1)))
    h.order("cleo", ago(days=50), lines=(("A", "bags", 1), ("B", "bags", 1), ("D", "hats", 1)))
    h.order("gone", ago(days=50), lines=(("A", "bags", 1), ("E", "bags", 1)))
    h.rows["staging.orders"][0].update(currency="EUR", fx_rate=0.85)  # anna pays in euros
    h.event("anna", "Product Added", ago(hours=3), sku="Z", value_minor=1700)  # 17.00 GBP
    h.event("anna", "Product Viewed", ago(hours=4), sku="Y")
    h.write(duck)
    write_profiles(duck, build_profiles(duck, NOW).frame)
    run_segments(duck, load_segments(), NOW)
    frame = build_payloads(duck, reporting_currency="GBP")
    return frame, {k: json.loads(v) for k, v in zip(frame["customer_key"], frame["payload"])}


def test_only_sendable_customers_get_a_payload(built):
    frame, _ = built
    assert sorted(frame["customer_key"]) == ["anna", "ben", "cleo"]


def test_cart_prices_in_the_customers_currency(built):
    _, docs = built
    (item,) = docs["anna"]["cart"]
    # 17.00 GBP -> reporting GBP (rate 1.0) -> EUR at 0.85 GBP per EUR = 20.00 EUR
    assert (item["sku"], item["price_minor"], item["currency"], item["price"]) == ("Z", 2000, "EUR", "20.00 EUR")
    assert docs["anna"]["last_viewed"] == [{"sku": "Y", "name": "Y"}]
    assert docs["anna"]["discount_eligible"] and docs["anna"]["segments"] == ["cart_abandoners"]


def test_greeting_falls_back_when_the_name_is_blank(built):
    _, docs = built
    assert docs["ben"]["greeting"] == "Hi there" and docs["ben"]["first_name"] is None
    assert docs["cleo"]["greeting"] == "Hi Cleo"
    assert payloads.greeting(None, "fr-FR") == "Bonjour"


def test_recommendations_exclude_what_was_bought(built):
    _, docs = built
    # anna bought A, B. Orders with A also hold B, C, D, E; with B: A, D. D scores 2.
    assert [r["sku"] for r in docs["anna"]["recommendations"]] == ["D", "C", "E"]
    for key, doc in docs.items():
        bought = {"anna": {"A", "B"}, "ben": {"A", "C"}, "cleo": {"A", "B", "D"}}[key]
        assert not bought & {r["sku"] for r in doc["recommendations"]}


def test_money_conversion_respects_minor_units():
    assert payloads.convert(1000, "EUR", "JPY", {"EUR": 1.0, "JPY": 0.0062}).display == "1,613 JPY"
    assert payloads.convert(500, "GBP", "XYZ", {"GBP": 1.0}).currency == "GBP"  # unknown rate: unchanged


def test_template_renders_payload_and_escapes_html(built):
    _, docs = built
    html = render(docs["anna"])["html"]
    assert "&lt;b&gt;Anna&lt;/b&gt;" in html and "<b>Anna</b>" not in html
    assert "20.00 EUR" in html and "COMEBACK10" in html
    frame, _ = built
    preview = preview_markdown(frame)
    assert preview.startswith("**an…**") and "You left these in your cart" in preview  # key masked
