"""EM recovers known m probabilities from simulated agreement patterns."""

import numpy as np

from personalization_assets.identity.fellegi_sunter import (
    FSModel,
    estimate_m,
    estimate_prior,
    possible_matches,
    unique_patterns,
)


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


def test_prior_is_the_match_rate_among_all_pairs_not_among_candidates():
    """Every candidate agrees on something, so against u of random pairs nearly all of them have a
    likelihood ratio above one; the prior must still come out near the true rate of matches
    among all pairs (a rate among the candidates alone called most of them matches)."""
    rng = np.random.default_rng(3)
    fields = ["first_name", "last_name", "birth_date"]
    m = [np.array([0, .02, .03, .1, .85]), np.array([0, .02, .03, .1, .85]), np.array([0, .02, .03, .05, .9])]
    u = [np.array([0, .97, .015, .005, .01]), np.array([0, .98, .01, .004, .006]),
         np.array([0, .98, .019, .0009, .0001])]
    model = FSModel(fields, m, u, 0.5)
    n_match, total_pairs = 2_000, 50_000_000
    matches = np.column_stack([simulate(rng, n_match, p) for p in m])
    # blocked on surname: non-matching candidates agree on it and are random on the rest
    others = np.column_stack([simulate(rng, 20_000, u[0]), np.full(20_000, 4), simulate(rng, 20_000, u[2])])
    levels = np.vstack([matches, others]).astype(np.uint8)
    rate = estimate_prior(model, levels, levels.shape[0], total_pairs)
    assert 0.7 < rate * total_pairs / n_match < 1.3


def test_pairs_that_show_two_people_are_not_possible_matches():
    fields = ["first_name", "birth_date", "national_id"]
    levels = np.array([[4, 4, 0],    # same name and birth date
                       [1, 4, 0],    # another first name
                       [4, 1, 0],    # another birth date
                       [1, 4, 4],    # another first name, the same personal id: a typo in one record
                       [1, 1, 4],    # both differ: two people whatever the id says
                       [0, 0, 0]],   # nothing to tell
                      np.uint8)
    assert possible_matches(levels, fields).tolist() == [True, False, False, True, False, True]
    assert possible_matches(levels[:, :1], fields[:1]).tolist() == [True, False, True, False, False, True]


def test_em_learns_what_one_person_looks_like_not_one_household():
    """Spouses, children and parents share a surname, an address and a mailbox: trained on their
    pairs as well, EM took households for matches (m of another birth date 0.45 at 1M records),
    and the prior counted every household pair as a match."""
    from bench.identity.households import generate_households
    from personalization_assets.identity import resolve

    df = generate_households(6000, seed=5)
    model = resolve(df.drop(columns=["entity", "household", "role"])).model
    birth = model.fields.index("birth_date")
    assert model.m[birth][1] < 0.02           # matches rarely hold two birth dates
    ent = df["entity"].value_counts()
    true_rate = (ent * (ent - 1) / 2).sum() / (len(df) * (len(df) - 1) / 2)
    assert model.match_rate < 2 * true_rate
