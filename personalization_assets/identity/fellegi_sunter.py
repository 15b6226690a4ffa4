"""Fellegi–Sunter match weights: u from random pairs, m and the match rate from EM.

As in Splink, u (how often a level occurs by chance) is measured on random record pairs, and
m (how often it occurs for true matches) is estimated by expectation maximisation over the
candidate pairs. EM runs on the distinct agreement patterns with their counts, so a run over
tens of millions of pairs iterates over a few thousand rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from personalization_assets.identity.compare import LEVELS, Comparator

FLOOR = 1e-6
LEVEL_BASE = max(len(x) for x in LEVELS.values())  # 5**8 patterns: a bincount, not a sort


@dataclass
class FSModel:
    fields: list[str]
    m: list[np.ndarray]
    u: list[np.ndarray]
    match_rate: float
    iterations: int = 0
    # u of a field's agreement among pairs that already agree on something correlated with it
    # (namesakes.CONDITIONS): how often two known-different namesakes share an e-mail
    conditional_u: dict[str, float] = field(default_factory=dict)

    def weight_tables(self) -> list[np.ndarray]:
        """log2(m/u) per level; level 0 (missing value) carries no evidence."""
        out = []
        for m, u in zip(self.m, self.u):
            w = np.log2(np.maximum(m, FLOOR) / np.maximum(u, FLOOR))
            w[0] = 0.0
            out.append(w.astype(np.float32))
        return out

    def field_weights(self, levels: np.ndarray) -> np.ndarray:
        """log2(m/u) per pair and field; an agreement that the pair's other agreements make
        common (``conditional_u``) weighs log2(m / conditional u) where that is lower."""
        from personalization_assets.identity.namesakes import CONDITIONS, capped_weight

        tables = self.weight_tables()
        w = np.column_stack([tables[k][levels[:, k]] for k in range(len(tables))]) \
            if len(tables) else np.zeros((levels.shape[0], 0), np.float32)
        col = {f: k for k, f in enumerate(self.fields)}
        for name in self.conditional_u:
            k = col[CONDITIONS[name][1]]
            w[:, k] = capped_weight(name, self, w[:, k], levels, col)
        return w

    def match_weight(self, levels: np.ndarray) -> np.ndarray:
        prior = np.log2(self.match_rate / (1 - self.match_rate))
        w = np.full(levels.shape[0], prior, np.float32)
        for k, table in enumerate(self.weight_tables()):
            w += table[levels[:, k]]
        return w

    def probability(self, levels: np.ndarray) -> np.ndarray:
        """Per pair, computed once per distinct agreement pattern (a few thousand at most)."""
        code, n_codes = pattern_codes(levels)
        present = np.flatnonzero(np.bincount(code, minlength=n_codes))
        table = np.zeros(n_codes, np.float32)
        table[present] = 1.0 / (1.0 + np.exp2(-self.match_weight(decode_patterns(present, levels.shape[1]))))
        return table[code]

    def to_dict(self) -> dict:
        return {"fields": self.fields, "m": [x.tolist() for x in self.m],
                "u": [x.tolist() for x in self.u], "match_rate": self.match_rate,
                "iterations": self.iterations, "conditional_u": dict(self.conditional_u)}

    @classmethod
    def from_dict(cls, d: dict) -> "FSModel":
        return cls(list(d["fields"]), [np.asarray(x) for x in d["m"]], [np.asarray(x) for x in d["u"]],
                   float(d["match_rate"]), int(d.get("iterations", 0)),
                   {k: float(v) for k, v in d.get("conditional_u", {}).items()})


def _level_freq(levels: np.ndarray, n_levels: int, weights: np.ndarray | None = None) -> np.ndarray:
    counts = np.bincount(levels, weights=weights, minlength=n_levels).astype(float)
    counts[0] = 0.0
    counts[1:] += 1e-3  # smoothing: an unseen level is rare, not impossible
    return counts / counts.sum()


def pattern_codes(levels: np.ndarray) -> tuple[np.ndarray, int]:
    """One integer per row of a level matrix (base LEVEL_BASE digits), and the code range."""
    code = np.zeros(levels.shape[0], np.int32)
    for k in range(levels.shape[1]):
        code *= LEVEL_BASE
        code += levels[:, k]
    return code, LEVEL_BASE ** levels.shape[1]


def decode_patterns(codes: np.ndarray, n_fields: int) -> np.ndarray:
    out = np.zeros((codes.size, n_fields), np.uint8)
    rest = codes.astype(np.int64)
    for k in range(n_fields - 1, -1, -1):
        out[:, k] = rest % LEVEL_BASE
        rest //= LEVEL_BASE
    return out


def unique_patterns(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a small-integer level matrix with their counts (a bincount, no sort)."""
    if levels.shape[0] == 0:
        return levels, np.empty(0, np.int64)
    code, n_codes = pattern_codes(levels)
    counts = np.bincount(code, minlength=n_codes)
    present = np.flatnonzero(counts)
    return decode_patterns(present, levels.shape[1]), counts[present]


# How often each level occurs between two random people in a customer table of some size
# (levels as in compare.LEVELS, level 0 unused). A small table has too few pairs to measure u:
# its estimate is blended with these, weighted by the distinct pairs it really has.
DEFAULT_U = {
    "first_name": (0, 0.97, 0.015, 0.005, 0.01),
    "last_name": (0, 0.98, 0.01, 0.004, 0.006),
    "birth_date": (0, 0.98, 0.019, 0.0009, 0.0001),
    "street": (0, 0.99, 0.009, 0.0009, 0.0001),
    "postcode_city": (0, 0.98, 0.01, 0.005, 0.005),
    "email": (0, 1 - 1e-6, 1e-6),
    "phone": (0, 1 - 1e-5, 5e-6, 5e-6),
    "national_id": (0, 1 - 1e-4, 5e-5, 3e-5, 2e-5),
}
DEFAULT_U_PAIRS = 5000  # the default counts as this many observed pairs


def estimate_u(comp: Comparator, n_records: int, pairs: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = pairs if n_records > 1 else 0  # sampled with replacement: small tables need no cap
    a = rng.integers(0, max(n_records, 1), pairs)
    b = rng.integers(0, max(n_records, 1), pairs)
    keep = a != b
    lv = comp.levels(a[keep], b[keep])
    out = []
    for k, f in enumerate(comp.fields):
        # distinct pairs behind the sample: a field held by few records has seen few pairs
        seen = float((lv[:, k] > 0).sum())
        filled = n_records * np.sqrt(seen / max(int(keep.sum()), 1))  # ~ records holding a value
        seen = min(seen, filled * (filled - 1) / 2)
        share = seen / (seen + DEFAULT_U_PAIRS)
        default = np.asarray(DEFAULT_U[f], float)
        out.append(share * _level_freq(lv[:, k], len(LEVELS[f])) + (1 - share) * default / default.sum())
    return out


# Levels at which two records are plainly two people (evidence.py's conflicts, on levels alone):
# first names under jw 0.8 and birth dates more than a year apart. A personal id equal up to one
# typo excuses one such field, as it does when pairs are scored.
TWO_PEOPLE_LEVEL = {"first_name": 1, "birth_date": 1}
PERSONAL_ID_LEVEL = 3


def possible_matches(levels: np.ndarray, fields: list[str]) -> np.ndarray:
    """Per pair: its levels do not show two people. EM learns m, and the prior counts matches,
    from these only: a spouse, a twin or a parent shares a surname, an address and a mailbox, so
    the pairs of a household form a "match" class of their own, whose m would say that matches
    often disagree on first name, birth date and surname (at 1M households: m of a different
    birth date 0.45, a different surname 0.06) and whose count would raise the prior."""
    n = np.zeros(levels.shape[0], np.int8)
    for field, level in TWO_PEOPLE_LEVEL.items():
        if field in fields:
            n += levels[:, fields.index(field)] == level
    excused = levels[:, fields.index("national_id")] >= PERSONAL_ID_LEVEL if "national_id" in fields \
        else np.zeros(levels.shape[0], bool)
    return (n == 0) | ((n == 1) & excused)


def _initial_m(n_levels: int) -> np.ndarray:
    m = np.zeros(n_levels)
    m[1:] = 0.02
    m[-1] = 0.9  # start from "matches mostly agree exactly", the classic EM starting point
    return m / m.sum()


def estimate_m(levels: np.ndarray, fields: list[str], u: list[np.ndarray],
               max_iter: int, tol: float) -> FSModel:
    """EM over distinct agreement patterns, u held fixed; match_rate is the in-sample rate."""
    if levels.shape[0] == 0:
        return FSModel(fields, [_initial_m(len(LEVELS[f])) for f in fields], u, 1e-4)
    patterns, counts = unique_patterns(levels)
    model = FSModel(fields, [_initial_m(len(LEVELS[f])) for f in fields], u, 0.01)
    for it in range(1, max_iter + 1):
        p = model.probability(patterns).astype(float)
        matched = counts * p
        new_rate = float(np.clip(matched.sum() / counts.sum(), 1e-6, 1 - 1e-6))
        new_m = [_level_freq(patterns[:, k], len(LEVELS[f]), matched) for k, f in enumerate(fields)]
        delta = max([abs(new_rate - model.match_rate)] +
                    [float(np.abs(a - b).max()) for a, b in zip(new_m, model.m)])
        model = FSModel(fields, new_m, u, new_rate, it)
        if delta < tol:
            break
    return model


def estimate_prior(model: FSModel, levels: np.ndarray, n_candidates: int, total_pairs: int,
                   iters: int = 500, weight: Callable[[np.ndarray], np.ndarray] | None = None) -> float:
    """Match rate among all record pairs (Splink's "probability two random records match"): EM
    over all pairs with m and u fixed, the pairs outside the ``n_candidates`` counted as
    non-matches (blocking misses few), the candidates through a uniform sample (``levels``).
    Each pair's posterior uses this rate, the prior it is scored with: a rate among the
    candidates only would say that most of them match, since u is measured on random pairs and
    every candidate agrees on something (at 1M household records it came out 30x the truth).
    ``weight(patterns)``: the log2 likelihood ratio of each agreement pattern (plain
    Fellegi-Sunter by default), so that the prior counts matches as the pairs are scored."""
    if levels.shape[0] == 0 or total_pairs <= 0:
        return 1e-6
    patterns, counts = unique_patterns(levels)
    weight = weight or FSModel(model.fields, model.m, model.u, 0.5).match_weight
    lr = np.exp2(np.asarray(weight(patterns), float))
    scale = n_candidates / counts.sum() / total_pairs  # each sampled pair's share of all pairs
    rate = float(np.clip(0.5 * n_candidates / total_pairs, 1e-9, 0.5))
    for _ in range(iters):
        post = rate * lr / (rate * lr + 1 - rate)
        new = float(np.clip((counts * post).sum() * scale, 1e-9, 0.5))
        done = abs(np.log(new / rate)) < 1e-6
        rate = new
        if done:
            break
    return rate
