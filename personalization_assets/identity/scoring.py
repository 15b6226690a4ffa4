"""Match decisions for all candidate pairs, scoring each field only where it can still matter.

Most candidate pairs are clearly not matches once a few fields are compared. Fields are
scored group by group (``Comparator.groups``); after each group a pair whose best possible
match weight (unscored fields at the best level still open to them) cannot reach the
threshold is dropped. The pairs that are kept get exactly the levels and probability a full
comparison would give them, so this changes the cost, never the decision.
"""

from __future__ import annotations

import numpy as np

from personalization_assets.identity.compare import CHUNK, Comparator
from personalization_assets.identity.fellegi_sunter import FSModel

# float32 sums of a handful of weights: a margin far above their rounding error
SLACK = 1e-3


def matching_pairs(comp: Comparator, a: np.ndarray, b: np.ndarray, model: FSModel,
                   threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (into a, b) of the pairs with probability >= threshold, their levels and
    probabilities."""
    tables = model.weight_tables()
    need = float(np.log2(threshold / (1 - threshold)) - np.log2(model.match_rate / (1 - model.match_rate)))
    col = {field: k for k, field in enumerate(comp.fields)}
    found, found_levels = [], []
    for start in range(0, a.size, CHUNK):
        ca, cb = a[start:start + CHUNK], b[start:start + CHUNK]
        best = {f: comp.best_weight(f, ca, cb, tables[k]) for f, k in col.items()}
        known = np.zeros(ca.size, np.float32)
        open_best = sum(best.values(), np.zeros(ca.size, np.float32))
        alive = np.arange(ca.size)
        levels = np.zeros((ca.size, len(col)), np.uint8)
        for group in comp.groups:
            scored = comp.score(group, ca[alive], cb[alive])
            for field, lv in zip(group, scored):
                k = col[field]
                levels[alive, k] = lv
                known[alive] += tables[k][lv]
                open_best[alive] -= best[field][alive]
            alive = alive[known[alive] + open_best[alive] >= need - SLACK]
        found.append(start + alive)
        found_levels.append(levels[alive])
    idx = np.concatenate(found) if found else np.empty(0, np.int64)
    levels = np.vstack(found_levels) if found_levels else np.empty((0, len(col)), np.uint8)
    prob = model.probability(levels) if idx.size else np.empty(0, np.float32)
    hit = prob >= threshold
    return idx[hit], levels[hit], prob[hit]
