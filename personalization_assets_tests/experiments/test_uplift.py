"""Uplift targeting on a simulated randomized send where only some customers are persuadable."""

import numpy as np
import pytest

from personalization_assets.experiments.uplift import TwoModelUplift, fit_logistic, qini, top_k_persuadables


def simulate(n, rng):
    """Frequent buyers buy anyway (high base rate, no effect); lapsed browsers are persuadable."""
    visits, recency = rng.poisson(3, n).astype(float), rng.uniform(0, 365, n)
    persuadable = (visits >= 3) & (recency > 120)
    treated = rng.random(n) < 0.5
    base = 0.02 + 0.10 * (recency < 60)
    y = (rng.random(n) < base + 0.12 * (treated & persuadable)).astype(float)
    return np.column_stack([visits, recency, visits * (recency > 120)]), treated, y, persuadable


def test_logistic_fit_recovers_known_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 2))
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(-1 + 2 * x[:, 0] - x[:, 1])))).astype(float)
    assert fit_logistic(x, y, l2=0) == pytest.approx([-1, 2, -1], abs=0.1)


def test_two_model_uplift_finds_persuadables_on_a_held_out_split():
    rng = np.random.default_rng(21)
    x, treated, y, persuadable = simulate(30_000, rng)
    train = rng.random(len(y)) < 0.7
    model = TwoModelUplift.fit(x[train], treated[train], y[train])
    test = ~train
    scores = model.predict(x[test])
    curve, random_curve = qini(scores, treated[test], y[test]), qini(rng.random(test.sum()), treated[test], y[test])
    assert curve.coefficient > 0.005 and curve.coefficient > 3 * abs(random_curve.coefficient)
    keys = np.flatnonzero(test)
    top = top_k_persuadables(list(keys), scores, 1000)
    assert persuadable[top].mean() > 0.8  # vs about 0.2 of the population
    buyers = np.argsort(-(0.02 + 0.10 * (x[test][:, 1] < 60)), kind="stable")[:1000]  # the most likely buyers
    assert persuadable[keys[buyers]].mean() < 0.3


def test_uplift_needs_both_arms():
    with pytest.raises(ValueError, match="both arms"):
        TwoModelUplift.fit(np.ones((4, 1)), [True] * 4, [0, 1, 0, 1])
