"""Estimate the Fellegi–Sunter model of a dataset, the way Splink's FEBRL examples do.

Candidate pairs from blocking are biased: pairs blocked on postcode agree on postcode
whether or not they match, so EM over them would credit postcode agreement as evidence.
Each EM session therefore trains on pairs from ONE blocking key and leaves out the fields
of that key; m of a field is the mean over the sessions that could see it. Pairs whose levels
show two people (fellegi_sunter.possible_matches) are left out: the members of a household
agree on surname, address and mailbox and would be learnt as the "match" class.
"""

from __future__ import annotations

import numpy as np

from personalization_assets.identity.blocking import codes, combine, sample_pairs_within_groups
from personalization_assets.identity.compare import Comparator
from personalization_assets.identity.config import MatchConfig
from personalization_assets.identity.evidence import household_adjustment
from personalization_assets.identity.prepare import Features
from personalization_assets.identity.fellegi_sunter import (
    FSModel,
    estimate_m,
    estimate_prior,
    estimate_u,
    possible_matches,
)
from personalization_assets.identity.namesakes import condition_groups, conditional_u

MAX_TRAINING_PAIRS = 150_000
# EM needs a sample, not every pair of a big block: blocks above this size are left out
TRAINING_MAX_BLOCK = 400


def _sessions(f: Features) -> list[tuple[np.ndarray, tuple[str, ...]]]:
    return [
        (codes(f, "birth"), ("birth_date",)),
        # postcode alone yields ~0.2% matches, too few for EM to find them reliably; the street
        # is left out with it, as records sharing a postcode share it far more often than people do
        (combine(codes(f, "postcode"), codes(f, "ln_sdx")), ("postcode_city", "street", "last_name")),
        (combine(codes(f, "fn_canon"), codes(f, "ln")), ("first_name", "last_name")),
        (codes(f, "email"), ("email",)),
    ]


def train(f: Features, comp: Comparator, cand_levels: np.ndarray, n_candidates: int,
          cfg: MatchConfig) -> FSModel:
    """``cand_levels``: levels of a uniform sample of the ``n_candidates`` candidate pairs."""
    rng = np.random.default_rng(cfg.seed)
    u = estimate_u(comp, len(f), cfg.u_sample_pairs, cfg.seed)
    sums = [np.zeros_like(x) for x in u]
    seen = np.zeros(len(u))
    for key, excluded in _sessions(f):
        a, b = sample_pairs_within_groups(key, TRAINING_MAX_BLOCK, MAX_TRAINING_PAIRS, rng)
        if a.size < 50:
            continue
        keep = [k for k, fld in enumerate(comp.fields) if fld not in excluded]
        model = session_m(comp.levels(a, b)[:, keep], [comp.fields[k] for k in keep], [u[k] for k in keep], cfg)
        for j, k in enumerate(keep):
            sums[k] += model.m[j]
            seen[k] += 1
    m = [s / n if n else _fallback(len(s)) for s, n in zip(sums, seen)]
    model = FSModel(list(comp.fields), m, u, 0.5)
    model.conditional_u = conditional_u(condition_groups(f.codes), comp.levels, list(comp.fields), cfg.seed)
    n = len(f)
    model.match_rate = min(match_rate(model, cand_levels, n_candidates, n, cfg.household_extra), cfg.max_prior)
    return model


def session_m(levels: np.ndarray, fields: list[str], u: list[np.ndarray], cfg: MatchConfig) -> FSModel:
    """EM of one session on its pairs that may be one person (fellegi_sunter.possible_matches)."""
    return estimate_m(levels[possible_matches(levels, fields)], fields, u, cfg.em_max_iterations, cfg.em_tolerance)


def match_rate(model: FSModel, cand_levels: np.ndarray, n_candidates: int, n_records: int,
               household_extra: float) -> float:
    """The prior from the candidate pairs that may be one person (the others match nobody),
    each weighed as pairs are scored: its household fields count as one fact (evidence.py), as
    plain Fellegi-Sunter would count a surname, street and postcode three times."""
    ok = possible_matches(cand_levels, model.fields)
    share = float(ok.mean()) if ok.size else 1.0
    col = {f: k for k, f in enumerate(model.fields)}

    def weight(patterns: np.ndarray) -> np.ndarray:
        w = model.field_weights(patterns)
        return w.sum(axis=1) + household_adjustment(w, col, household_extra)
    return estimate_prior(model, cand_levels[ok], int(round(n_candidates * share)), n_records * (n_records - 1) // 2,
                          weight=weight)


def _fallback(n_levels: int) -> np.ndarray:
    """No session could see this field: assume matches mostly agree exactly."""
    m = np.full(n_levels, 0.05)
    m[0], m[-1] = 0.0, 0.9
    return m / m.sum()
