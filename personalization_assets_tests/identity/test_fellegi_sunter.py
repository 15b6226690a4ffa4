"""EM recovers known m probabilities from simulated agreement patterns."""

import numpy as np

from personalization_assets.identity.fellegi_sunter import FSModel, estimate_m, unique_patterns


def simulate(rng, n, probs):
    return rng.choice(len(probs), n, p=probs)


def test_em_recovers_m_and_match_rate():
    rng = np.random.default_rng(0)
    fields = ["first_name", "last_name", "birth_date"]  # 5 levels each
    m_true = [np.array([0, .05, .05, .2, .7]), np.array([0, .04, .06, .2, .7]), np.array([0, .05, .05, .1, .8])]
    u_true = [np.array([0, .9, .06, .03, .01]), np.array([0, .95, .03, .015, .005]), np.array([0, .97, .02, .009, .001])]
    n_match, n_non = 3000, 20000
    lv = np.vstack([
        np.column_stack([simulate(rng, n_match, m) for m in m_true]),
        np.column_stack([simulate(rng, n_non, u) for u in u_true]),
    ]).astype(np.uint8)
    model = estimate_m(lv, fields, u_true, max_iter=200, tol=1e-7)
    assert model.iterations < 200  # converged before the cap
    assert abs(model.match_rate - n_match / (n_match + n_non)) < 0.02
    for got, want in zip(model.m, m_true):
        assert np.abs(got - want).max() < 0.05


def test_weights_sign_and_missing_level_is_neutral():
    m = [np.array([0, .1, .9])]
    u = [np.array([0, .9, .1])]
    model = FSModel(["email"], m, u, 0.5)
    w = model.field_weights(np.array([[0], [1], [2]], np.uint8))[:, 0]
    assert w[0] == 0 and w[1] < 0 < w[2]


def test_unique_patterns_counts():
    lv = np.array([[1, 2], [1, 2], [0, 1]], np.uint8)
    pats, counts = unique_patterns(lv)
    assert {tuple(p): c for p, c in zip(pats.tolist(), counts.tolist())} == {(1, 2): 2, (0, 1): 1}
