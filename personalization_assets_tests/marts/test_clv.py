"""CLV models against the published CDNOW fits (Fader, Hardie & Lee 2005; Fader & Hardie 2013)."""

import numpy as np
import pandas as pd
import pytest

from personalization_assets.marts import clv
from personalization_assets_tests.conftest import FIXTURES

BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
GAMMA_GAMMA = {"p": 6.249, "q": 3.745, "v": 15.448}


@pytest.fixture(scope="module")
def cdnow():
    return FIXTURES / "cdnow"


def test_bgnbd_reproduces_published_parameters(cdnow):
    s = pd.read_csv(cdnow / "cdnow_customers_summary.csv")
    fit = clv.fit_bgnbd(s["frequency"], s["recency"], s["T"])
    for name, expected in BGNBD.items():
        assert getattr(fit, name) == pytest.approx(expected, rel=0.02), name


def test_gamma_gamma_reproduces_published_parameters(cdnow):
    s = pd.read_csv(cdnow / "cdnow_customers_summary_with_transactions.csv")
    fit = clv.fit_gamma_gamma(s["x"], s["zbar"])
    for name, expected in GAMMA_GAMMA.items():
        assert getattr(fit, name) == pytest.approx(expected, rel=0.02), name


def test_conditional_expectation_matches_the_paper():
    # FHL 2005, section 5: x=2, t_x=30.43, T=38.86 weeks -> 1.226 purchases in the next 39 weeks.
    params = clv.BetaGeoParams(**BGNBD)
    assert clv.expected_purchases(params, 39, [2], [30.43], [38.86])[0] == pytest.approx(1.226, abs=0.002)
    # Nobody who never repurchased can be "dead" in BG/NBD: P(alive) is 1 for x = 0.
    assert clv.probability_alive(params, [0], [0], [38.86])[0] == 1.0


def test_summary_from_transactions_matches_the_published_summary(cdnow):
    sample = pd.read_csv(cdnow / "CDNOW_sample.txt.gz", sep=r"\s+", header=None, dtype={"date": str},
                         names=["customer_id", "customer_index", "date", "number_of_cds", "dollar_value"])
    sample["date"] = pd.to_datetime(sample["date"], format="%Y%m%d")
    calibration = sample[sample["date"] <= "1997-09-30"]
    ours = clv.summarize_transactions(calibration, "customer_index", "date", "dollar_value",
                                      pd.Timestamp("1997-09-30"), unit_days=7)
    ref = pd.read_csv(cdnow / "cdnow_customers_summary_with_transactions.csv").set_index("ID")
    ours = ours.loc[ref.index]
    assert (ours["x"].to_numpy() == ref["x"].to_numpy()).all()
    # The published file rounds weeks and dollars to two decimals.
    assert np.abs(ours["t_x"].to_numpy() - ref["t_x"].to_numpy()).max() <= 0.005 + 1e-9
    assert np.abs(ours["T"].to_numpy() - ref["T"].to_numpy()).max() <= 0.005 + 1e-9
    assert np.abs(ours["mean_repeat_value"].to_numpy() - ref["zbar"].to_numpy()).max() <= 0.005 + 1e-9


def test_degenerate_populations_raise_a_clear_fit_error():
    with pytest.raises(clv.FitError, match="repeat buyers"):
        clv.fit_bgnbd([0] * 50, [0] * 50, [10] * 50)
    with pytest.raises(clv.FitError, match="Gamma-Gamma"):
        clv.fit_gamma_gamma([1, 2], [10.0, 12.0])
