"""RFM on the UCI Online Retail invoices, through our staging shape and the warehouse profile SQL."""

from datetime import datetime, timezone

import duckdb
import pandas as pd
import pytest

from personalization_assets.marts import retail, rfm
from personalization_assets.marts.profiles import build_profiles
from personalization_assets.resources.warehouse import WarehouseConnection
from personalization_assets_tests.conftest import shared_data

AS_OF = datetime(2011, 12, 10, tzinfo=timezone.utc)  # the day after the last invoice


@pytest.fixture(scope="module")
def raw():
    return retail.read_invoices(shared_data("online-retail", "online_retail.csv.gz"))


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


def test_standard_cleaning_gives_the_published_counts(profiles):
    staged, _ = profiles
    assert len(staged.order_lines) == 397_924
    assert len(staged.orders) == 18_536
    assert staged.dropped["no_customer_id"] == 135_080


def test_profiles_have_exact_customer_count_and_revenue(profiles):
    _, built = profiles
    frame = built.frame
    buyers = frame[frame["orders_count"] > 0]
    assert len(buyers) == 4_339
    assert int(buyers["orders_count"].sum()) == 18_536
    assert int(buyers["historical_value_minor"].sum()) == 891_140_790  # 8,911,407.90 GBP


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
        assert sizes.max() - sizes.min() <= 1, column  # 4,339 customers: 868 or 867 each
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
