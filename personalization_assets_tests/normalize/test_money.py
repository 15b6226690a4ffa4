from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personalization_assets.normalize import FxRates, convert, minor_units, to_minor
from personalization_assets.normalize.money import default_rates
from personalization_assets_tests.conftest import FIXTURES


def test_minor_units_of_every_iso_4217_currency_agree_with_the_six_table():
    table = pd.read_csv(FIXTURES / "iso-country-currency" / "currencies.csv", dtype=str, keep_default_na=False)
    assert len(table) == 178
    for code, units in zip(table["code"], table["minor_units"]):
        if units == "N.A.":
            with pytest.raises(ValueError, match="no minor unit"):
                minor_units(code)
        else:
            assert minor_units(code) == int(units), code
    with pytest.raises(ValueError, match="unknown ISO 4217 currency"):
        minor_units("ZZZ")


def test_amounts_become_exact_minor_units():
    amount = pd.Series(["19.99", "0.1", 0.1 + 0.2, 100, "1e3", "-5.5", "0.125", "0.135", "12.345", "7"])
    currency = pd.Series(["EUR", "eur", "EUR", "JPY", "GBP", "EUR", "EUR", "EUR", "BHD", "CLF"])
    out = to_minor(amount, currency)
    # 0.1 + 0.2 is the float 0.30000000000000004: read by its shortest repr, then rounded.
    assert out["amount_minor"].tolist() == [1999, 10, 30, 100, 100000, -550, 12, 14, 12345, 70000]
    assert str(out["amount_minor"].dtype) == "Int64" and out["amount_issue"].isna().all()


def test_excess_decimals_can_be_an_issue_instead_of_rounded():
    out = to_minor(pd.Series(["0.125", "0.120"]), pd.Series(["EUR", "EUR"]), excess_decimals="issue")
    assert pd.isna(out["amount_minor"][0]) and out["amount_issue"][0] == "more than 2 decimals for EUR: 0.125"
    assert out["amount_minor"][1] == 12


@pytest.mark.parametrize("amount, currency, reason", [
    ("1,234.50", "EUR", "not a number"), ("1.234,50", "EUR", "not a number"), ("abc", "EUR", "not a number"),
    (None, "EUR", "missing amount"), (float("nan"), "EUR", "missing amount"), ("inf", "EUR", "not a number"),
    ("10", "ZZZ", "unknown currency"), ("10", None, "missing currency"), ("10", "XAU", "no minor unit"),
    ("9" * 30, "EUR", "out of range"), (True, "EUR", "not a number"),
])
def test_unusable_amounts_carry_a_reason(amount, currency, reason):
    out = to_minor(pd.Series([amount], dtype=object), pd.Series([currency], dtype=object))
    assert pd.isna(out["amount_minor"].item()) and reason in out["amount_issue"].item()


def test_online_retail_prices_in_gbp_add_up_to_the_exact_revenue():
    frame = pd.read_csv(FIXTURES / "online-retail" / "online_retail_slice.csv.gz",
                        dtype={"InvoiceNo": str, "UnitPrice": str, "Country": str},
                        usecols=["InvoiceNo", "Quantity", "UnitPrice", "CustomerID"])
    clean = frame[frame["CustomerID"].notna() & ~frame["InvoiceNo"].str.startswith("C") & (frame["Quantity"] > 0)]
    prices = to_minor(clean["UnitPrice"], pd.Series("GBP", index=clean.index), excess_decimals="issue")
    # The real data has a few sub-penny prices (0.001), all kept in the slice: exactly those are
    # flagged, not rounded.
    sub_penny = clean["UnitPrice"].str.contains(r"\.\d{3}", regex=True)
    assert sub_penny.sum() == 4 and (prices["amount_issue"].notna() == sub_penny).all()
    exact = int((prices.loc[~sub_penny, "amount_minor"].astype("int64") * clean.loc[~sub_penny, "Quantity"]).sum())
    rest = sum(Decimal(p) * q * 100 for p, q in zip(clean.loc[sub_penny, "UnitPrice"], clean.loc[sub_penny, "Quantity"]))
    # The oracle: decimal arithmetic on the price text, in pence, no rounding anywhere.
    revenue = sum(Decimal(p) * q for p, q in zip(clean["UnitPrice"], clean["Quantity"])) * 100
    assert exact + rest == revenue and revenue > 10_000_000  # more than 100,000 GBP of real invoices


def test_conversion_uses_the_rate_of_the_order_date():
    rates = default_rates()
    on = pd.Series(pd.to_datetime(["2024-03-15T23:30:00+00:00", "2011-06-01T00:00:00-05:00"], utc=True))
    out = convert(pd.Series([10_000, 10_000]), pd.Series(["USD", "GBP"]), on, to="EUR")
    usd = rates.rate("USD", pd.Timestamp("2024-03-01").to_datetime64().astype("datetime64[D]"))
    gbp = rates.rate("GBP", pd.Timestamp("2011-06-01").to_datetime64().astype("datetime64[D]"))
    assert out["reporting_minor"].tolist() == [round(Decimal(10_000) * usd), round(Decimal(10_000) * gbp)]
    assert out["fx_issue"].isna().all()


def test_conversion_between_currencies_with_different_minor_units_is_exact():
    frame = pd.DataFrame({"date": pd.to_datetime(["2024-01-01"] * 3), "currency": ["JPY", "GBP", "EUR"],
                          "rate_to_eur": ["0.00625", "1.16", "1"]})
    rates = FxRates(frame)
    on = pd.Series(["2024-01-20"] * 3)
    out = convert(pd.Series([1000, 999, 1]), pd.Series(["JPY", "JPY", "EUR"]), on, to="GBP", rates=rates)
    # 1000 JPY = 6.25 EUR = 5.387931... GBP -> 539 pence; 999 JPY -> 538.28 -> 538; 0.01 EUR -> 0.0086 -> 1
    assert out["reporting_minor"].tolist() == [539, 538, 1]


def test_a_missing_rate_is_an_issue_never_a_zero():
    on = pd.Series(["2008-12-31", "2030-01-01", "2024-01-10", None, "2024-01-10", "2024-01-10"], dtype=object)
    currency = pd.Series(["USD", "USD", "BHD", "USD", "ZZZ", "EUR"])
    out = convert(pd.Series([500, 500, 500, 500, 500, pd.NA], dtype="Int64"), currency, on, to="EUR")
    assert out["reporting_minor"].isna().all()
    assert out["fx_issue"].tolist() == [
        "no FX rate for USD on 2008-12-31", "no FX rate for USD on 2030-01-01",
        "no FX rate for BHD on 2024-01-10", "no date for the FX rate", "no FX rate for ZZZ", "missing amount"]


def test_a_rate_older_than_the_staleness_limit_is_not_used():
    frame = pd.DataFrame({"date": pd.to_datetime(["2024-01-01"]), "currency": ["USD"], "rate_to_eur": ["0.9"]})
    rates = FxRates(frame, max_staleness=pd.Timedelta(days=7))
    out = convert(pd.Series([100, 100]), pd.Series(["USD", "USD"]), pd.Series(["2024-01-08", "2024-01-09"]),
                  rates=rates)
    assert out["reporting_minor"][0] == 90 and out["fx_issue"][1] == "no FX rate for USD on 2024-01-09"


def test_the_seed_table_covers_every_month_for_its_currencies():
    frame = default_rates().frame
    assert sorted(frame["currency"].unique()) == sorted(
        ["EUR", "GBP", "USD", "SEK", "DKK", "PLN", "CHF", "NOK", "CZK", "JPY", "AUD", "CAD"])
    months = pd.date_range("2009-01-01", "2027-12-01", freq="MS")
    for code, rows in frame.groupby("currency"):
        assert rows["date"].tolist() == list(months), code
        assert all(Decimal(r) > 0 for r in rows["rate_to_eur"]), code


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.integers(-10**6, 10**6), st.integers(-2**63 + 1, 2**63 - 1)),
                          st.sampled_from(["USD", "JPY", "GBP", "CHF", "EUR", "SEK"]),
                          st.dates(date(2009, 1, 1), date(2027, 12, 31))), min_size=1, max_size=30),
       st.sampled_from(["EUR", "GBP", "JPY"]))
def test_conversion_is_exact_half_even_rounding_of_the_rational_product(rows, to):
    rates = default_rates()
    amount = pd.Series([a for a, _, _ in rows], dtype="Int64")
    out = convert(amount, pd.Series([c for _, c, _ in rows]), pd.Series([d.isoformat() for _, _, d in rows]), to=to)
    for (a, code, day), got, issue in zip(rows, out["reporting_minor"], out["fx_issue"]):
        at = np.datetime64(day, "D")
        factor = Fraction(rates.rate(code, at)) / Fraction(rates.rate(to, at)) * Fraction(10) ** (minor_units(to) - minor_units(code))
        expected = round(Fraction(a) * factor)  # Fraction rounds half to even
        if abs(expected) > 2**63 - 1:
            assert pd.isna(got) and "does not fit" in issue
        else:
            assert got == expected and issue is None


def test_amounts_that_are_not_whole_minor_units_are_issues():
    out = convert(pd.Series([150, 2.0, 1.5, "12", None, True], dtype=object), pd.Series(["EUR"] * 6),
                  pd.Series(["2024-01-10"] * 6))
    assert out["reporting_minor"].tolist()[:2] == [150, 2]
    assert out["fx_issue"].tolist()[2:] == ["not a whole number of minor units: 1.5",
                                           "not a whole number of minor units: 12", "missing amount",
                                           "not a whole number of minor units: True"]
