"""Records that fit two people: a namesake's record without the field that tells them apart.

A father and his son of one name at one address, or twins (one surname, birth date and
address): their records that hold a birth date (a first name) show two people. A record of
that name and address without a birth date (without a first name) may be either of them, and
nothing in it says which, so it joins neither and goes to review (``ambiguous``). cluster.py
catches such a record when its links reach both people; this catches it when they reach one,
because the other's records differ in something the record lacks (a "Jr", a new mailbox).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from personalization_assets.identity.blocking import pairs_within_groups, sample_pairs_within_groups

# (columns a group of namesakes shares, the conflict field that tells them apart)
GROUPS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("fn", "ln", "street"), "birth_date"),
    (("ln", "birth", "street"), "first_name"),
)
FIELD_COLUMN = {"birth_date": "birth", "first_name": "fn"}


def group_codes(codes: dict[str, np.ndarray], cols: tuple[str, ...]) -> np.ndarray:
    """One code per distinct combination of ``cols`` (-1 where one of them is missing)."""
    frame = pd.DataFrame({c: codes[c] for c in cols})
    key = frame.groupby(list(cols), sort=False).ngroup().to_numpy(np.int64)
    return np.where((frame.to_numpy() >= 0).all(axis=1), key, -1)


def scorer_differ(scorer) -> Callable[[str, np.ndarray, np.ndarray], np.ndarray]:
    """``differ(field, a, b)`` of a PairScorer: its conflict test on the field's levels."""
    def differ(field: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        group = ("first_name", "last_name") if field == "first_name" else (field,)
        level = scorer.comp.score(tuple(g for g in group if g in scorer.col), a, b)[0]
        return scorer._differ(field, a, b, level)
    return differ


def scorer_ambiguous(scorer, max_group: int) -> np.ndarray:
    """ambiguous_records() of a PairScorer's records, found once per scorer: a run asks it for the
    pairs it compared and again for the old links it carries (incremental.old_links)."""
    memo = scorer.__dict__.setdefault("_ambiguous", {})
    if max_group not in memo:
        codes = {c: scorer.comp.c[c].codes for c in ("fn", "ln", "birth", "street")}
        memo[max_group] = ambiguous_records(codes, scorer_differ(scorer), scorer.comp.fields, max_group)
    return memo[max_group]


def ambiguous_records(codes: dict[str, np.ndarray], differ: Callable[[str, np.ndarray, np.ndarray], np.ndarray],
                      fields: list[str], max_group: int) -> np.ndarray:
    """Per record: it lacks the field that tells apart two namesakes of its group, whose records
    holding that field differ on it (``differ(field, a, b)``: two values that are two people).
    Groups whose records holding the field are more than ``max_group`` are left alone."""
    n = next(iter(codes.values())).size
    out = np.zeros(n, bool)
    for cols, field in GROUPS:
        if field not in fields:
            continue
        key = group_codes(codes, cols)
        missing = codes[FIELD_COLUMN[field]] < 0
        a, b, _ = pairs_within_groups(np.where(missing, -1, key), max_group)
        if a.size == 0:
            continue
        two = np.unique(key[a[differ(field, a, b)]])
        out |= missing & (key >= 0) & np.isin(key, two)
    return out


# Agreement that two different people share more often than two random ones, because they
# already share something else: an e-mail between namesakes (the name is the address:
# john.smith@..., and a family mailbox is a father's and his son's). name -> (columns of the
# group the pairs are drawn from, the field, its lowest agreeing level, fields the pair must
# agree on for the conditional u to apply: (field, lowest level)). A first name inside one
# household (father and son) was measured the same way (hh100k: precision +0.0007, recall
# -0.008) and is left to the namesake rule above.
CONDITIONS: dict[str, tuple[tuple[str, ...], str, int, tuple[tuple[str, int], ...]]] = {
    "email|names": (("fn", "ln"), "email", 2, (("first_name", 3), ("last_name", 3))),
}
MIN_KNOWN_DIFFERENT = 100  # pairs of known-different people below which nothing is estimated
CONDITION_MAX_GROUP = 50
CONDITION_SAMPLE = 150_000


def condition_groups(codes: dict[str, np.ndarray]) -> Callable[[tuple[str, ...]], tuple[np.ndarray, np.ndarray]]:
    """conditional_u's groups from per-record codes: ``groups(cols)`` gives the positions of
    the records holding a birth date and every column of ``cols``, and their group_codes."""
    def groups(cols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        key = np.where(codes["birth"] >= 0, group_codes(codes, cols), -1)
        pos = np.flatnonzero(key >= 0)
        return pos, key[pos]
    return groups


def condition_pairs(pos: np.ndarray, key: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A sample of the pairs of records (positions ``pos``, ascending) that share a group ``key``
    (ordered as group_codes orders groups: by first appearance). Records of groups of one or of
    more than CONDITION_MAX_GROUP may be left out of ``pos``: the sample is the same."""
    a, b = sample_pairs_within_groups(key, CONDITION_MAX_GROUP, CONDITION_SAMPLE, rng)
    return pos[a], pos[b]  # pos ascends: a < b still


def conditional_u(groups: Callable[[tuple[str, ...]], tuple[np.ndarray, np.ndarray]],
                  levels: Callable[[np.ndarray, np.ndarray], np.ndarray], fields: list[str],
                  seed: int) -> dict[str, float]:
    """Per condition, how often two people known to be different (birth dates that are two
    people's) who share the condition's group still agree on its field: the u of that agreement
    among such pairs, which the random pairs of Fellegi-Sunter's u cannot see. ``groups(cols)``:
    the records of each group (condition_groups), ``levels(a, b)``: the pairs' levels of ``fields``."""
    out = {}
    rng = np.random.default_rng(seed)
    for name, (cols, field, agree, needs) in CONDITIONS.items():
        if field not in fields or "birth_date" not in fields or any(f not in fields for f, _ in needs):
            continue
        a, b = condition_pairs(*groups(cols), rng)
        if a.size == 0:
            continue
        lv = levels(a, b)
        k = fields.index(field)
        known = (lv[:, fields.index("birth_date")] == 1) & (lv[:, k] > 0)
        if known.sum() >= MIN_KNOWN_DIFFERENT:
            out[name] = float(((lv[known, k] >= agree).sum() + 0.5) / (known.sum() + 1))
    return out


def cap_table(model, name: str) -> np.ndarray:
    """Per level of the condition's field, log2(m / conditional u)."""
    m = np.asarray(model.m[model.fields.index(CONDITIONS[name][1])], float)
    return np.log2(np.maximum(m, 1e-6) / model.conditional_u[name]).astype(np.float32)


def capped_weight(name: str, model, weights: np.ndarray, levels: np.ndarray, col: dict[str, int]) -> np.ndarray:
    """The field's weights (per pair) with the condition's agreement weighed by its conditional u,
    log2(m / u), where it is lower: only for pairs that meet the condition."""
    cols, field, agree, needs = CONDITIONS[name]
    k, cap = col[field], cap_table(model, name)
    inside = levels[:, k] >= agree
    for f, lowest in needs:
        inside &= levels[:, col[f]] >= lowest
    return np.where(inside, np.minimum(weights, cap[levels[:, k]]), weights)
