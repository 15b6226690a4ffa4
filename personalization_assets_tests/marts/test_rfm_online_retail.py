"""RFM on the UCI Online Retail invoices, through our staging shape and the warehouse profile SQL.

The fixture is a slice of whole customers (fixtures/online-retail/SOURCE.md); the expected counts
are derived from it with plain pandas and decimal arithmetic, independently of the code under test.
"""

from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal

import duckdb
import pandas as pd
import pytest

from personalization_assets.marts import retail, rfm
from personalization_assets.marts.profiles import build_profiles
from personalization_assets.warehouse import WarehouseConnection
from personalization_assets_tests.conftest import FIXTURES

AS_OF = datetime(2011, 12, 10, tzinfo=timezone.utc)  # the day after the last invoice
SLICE = FIXTURES / "online-retail" / "online_retail_slice.csv.gz"


@pytest.fixture(scope="module")
def raw():
    return retail.read_invoices(SLICE)


@pytest.fixture(scope="module")
def expected():
    """Standard RFM cleaning (customer id, not a `C` cancellation, quantity > 0) on the raw text."""
    text = pd.read_csv(SLICE, dtype=str, keep_default_na=False)
    clean = text[(text["CustomerID"] != "") & ~text["InvoiceNo"].str.startswith("C")
                 & (text["Quantity"].astype(int) > 0)]
    pence = [(Decimal(p) * int(q) * 100).quantize(Decimal(1), ROUND_HALF_EVEN)
             for p, q in zip(clean["UnitPrice"], clean["Quantity"])]
    return {"lines": len(clean), "orders": clean["InvoiceNo"].nunique(), "buyers": clean["CustomerID"].nunique(),
            "no_customer_id": int((text["CustomerID"] == "").sum()), "revenue_minor": int(sum(pence))}


@pytest.fixture(scope="module")
def profiles(raw):
    staged = retail.clean_invoices(raw)
    con = duckdb.connect()
    for schema in ("core", "staging"):
        con.execute(f"create schema {schema}")
    frames = {"core.customers": staged.customers, "staging.orders": staged.orders,
              "staging.order_lines": staged.order_lines,
              "core.customer_crosswalk": staged.customers[["customer_key"]].assign(
                  record_id=staged.customers["customer_key"]),
              "core.identity_map": pd.DataFrame({"identity_type": pd.Series(dtype=str),
                                                 "identity": pd.Series(dtype=str),
                                                 "customer_key": pd.Series(dtype=str)}),
              "staging.events": pd.DataFrame({c: pd.Series(dtype=str) for c in (
                  "type", "event", "user_id", "anonymous_id", "cart_id", "sku", "category", "currency")}
              ).assign(timestamp=pd.Series(dtype="datetime64[ns, UTC]"), value_minor=pd.Series(dtype="int64"))}
    for name, frame in frames.items():
        con.register("_f", frame)
        con.execute(f"create table {name} as select * from _f")
        con.unregister("_f")
    built = build_profiles(WarehouseConnection(con, "duckdb"), AS_OF)
    con.close()
    return staged, built


def test_standard_cleaning_gives_the_expected_counts(profiles, expected):
    staged, _ = profiles
    assert len(staged.order_lines) == expected["lines"]
    assert len(staged.orders) == expected["orders"]
    assert staged.dropped["no_customer_id"] == expected["no_customer_id"] > 0


def test_profiles_have_exact_customer_count_and_revenue(profiles, expected):
    _, built = profiles
    frame = built.frame
    buyers = frame[frame["orders_count"] > 0]
    assert len(buyers) == expected["buyers"] >= 300  # enough for quintiles and the CLV fit
    assert int(buyers["orders_count"].sum()) == expected["orders"]
    assert int(buyers["historical_value_minor"].sum()) == expected["revenue_minor"]  # each line rounded to pence


def test_monetary_matches_an_independent_pandas_computation(raw, profiles):
    _, built = profiles
    clean = raw[raw["CustomerID"].notna() & ~raw["InvoiceNo"].str.startswith("C") & (raw["Quantity"] > 0)]
    expected = (clean["Quantity"] * clean["UnitPrice"]).groupby(clean["CustomerID"]).sum().round(2)
    ours = built.frame.set_index("customer_key")["monetary"]
    ours.index = ours.index.str.removeprefix("retail:").astype("int64")
    assert (ours.loc[expected.index] - expected).abs().max() < 0.006


def test_rfm_quintiles_and_named_segments(profiles):
    _, built = profiles
    frame = built.frame
    for column in ("r_score", "f_score", "m_score"):
        sizes = frame[column].value_counts()
        assert sorted(sizes.index.tolist()) == [1, 2, 3, 4, 5]
        assert sizes.max() - sizes.min() <= 1, column  # n customers: n // 5 or n // 5 + 1 each
    assert set(frame["rfm_segment"]) <= set(rfm.SEGMENT_NAMES)
    best = frame.sort_values("monetary").iloc[-1]
    assert best["m_score"] == 5
    recent = frame[frame["recency_days"] == frame["recency_days"].min()]
    assert (recent["r_score"] == 5).all()
    # Champions bought recently and often; hibernating customers neither.
    champions = frame[frame["rfm_segment"] == "champions"]
    hibernating = frame[frame["rfm_segment"] == "hibernating"]
    assert champions["recency_days"].median() < hibernating["recency_days"].median()
    assert champions["frequency"].median() > hibernating["frequency"].median()


def test_clv_fits_on_real_invoices(profiles):
    _, built = profiles
    assert built.clv_fit["fitted"], built.clv_fit
    frame = built.frame
    assert frame["p_alive"].between(0, 1).all()
    assert (frame["predicted_value_minor"] >= 0).all()
