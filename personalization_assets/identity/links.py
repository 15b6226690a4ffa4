"""Which scored pairs become links: the evidence of each, its rule, and the pairs refused.

A pair links when its adjusted match probability (evidence.py) reaches the threshold and the
two records do not conflict. A shared identifier labels the link (``exact:email_key``,
``exact:phone``) but decides nothing by itself. Two records of one source with the same
source id are the same source record (``exact:source_id``) and link unless they conflict.
A pair that would have linked but conflicts on one field goes to review (twins, Jr/Sr, a bad typo);
one that conflicts on several is plainly two people of a household (see core.households).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from personalization_assets.identity.blocking import pairs_within_groups
from personalization_assets.identity.evidence import Assessment, PairScorer
from personalization_assets.identity.namesakes import scorer_ambiguous

SOURCE_ID_PROB = 2.0  # above any probability: sorts first when clusters are built


@dataclass
class Links:
    left: np.ndarray
    right: np.ndarray
    prob: np.ndarray
    rule: np.ndarray         # object: exact:<key> | fuzzy
    levels: np.ndarray       # (links, fields)
    weight: np.ndarray
    tf_adjustment: np.ndarray
    household_adjustment: np.ndarray

    def __len__(self) -> int:
        return self.left.size


def link_rules(scorer: PairScorer, s: Assessment) -> np.ndarray:
    """The label of each scored pair: exact:email_key or exact:phone when that identifier agrees, else fuzzy."""
    rule = np.full(s.prob.size, "fuzzy", object)
    for field, name in (("phone", "exact:phone"), ("email", "exact:email_key")):  # email wins
        k = scorer.col.get(field)
        if k is not None:
            rule[s.levels[:, k] == len(scorer.model.m[k]) - 1] = name  # the exact level
    return rule


def accepted_links(scorer: PairScorer, a: np.ndarray, b: np.ndarray, levels: np.ndarray, threshold: float,
                   source_key: np.ndarray, max_group: int, only: np.ndarray | None) -> tuple[Links, pd.DataFrame]:
    """Links among the pairs (a, b) that reached the threshold on plain Fellegi-Sunter (their
    ``levels``), plus same-source-id pairs; and review rows for the pairs refused on a conflict."""
    s = scorer.assess(a, b, levels)
    ok = (s.prob >= threshold) & ~s.conflict
    # a record that fits two namesakes (father and son) links to neither (namesakes.py)
    amb = scorer_ambiguous(scorer, max_group)
    held = ok & (amb[a] | amb[b])
    ok &= ~held
    # a pair that disagrees on one field only (twins, father and son, or a bad typo) is worth a
    # look; one that disagrees on several is plainly two people of one household
    refused = (s.prob >= threshold) & s.conflict & (s.n_conflicts <= 1)
    ends = np.unique(np.concatenate([a[held], b[held]]))
    ends = ends[amb[ends]]
    review = pd.DataFrame({"left": np.concatenate([a[refused], ends]),
                           "right": np.concatenate([b[refused], np.full(ends.size, -1, a.dtype)]),
                           "reason": ["conflict"] * int(refused.sum()) + ["ambiguous"] * ends.size,
                           "score": np.concatenate([s.prob[refused], np.full(ends.size, np.nan)])})
    rule = link_rules(scorer, s)
    sa, sb, _ = pairs_within_groups(source_key.astype(np.int64), max_group)
    if only is not None and sa.size:
        keep = only[sa] | only[sb]
        sa, sb = sa[keep], sb[keep]
    parts = [(a[ok], b[ok], s.prob[ok], rule[ok], s.levels[ok], s.weight[ok], s.tf_adjustment[ok],
              s.household_adjustment[ok])]
    if sa.size:
        t = scorer.assess(sa, sb)
        fine = ~t.conflict
        parts.append((sa[fine], sb[fine], np.full(int(fine.sum()), SOURCE_ID_PROB),
                      np.full(int(fine.sum()), "exact:source_id", object), t.levels[fine], t.weight[fine],
                      t.tf_adjustment[fine], t.household_adjustment[fine]))
    cols = [np.concatenate(x) for x in zip(*parts)]
    links = Links(cols[0].astype(np.int64), cols[1].astype(np.int64), cols[2].astype(float), *cols[3:])
    # a pair found by both routes keeps its source-id row (sorted last, so kept by "last")
    dup = pd.DataFrame({"l": links.left, "r": links.right}).duplicated(keep="last").to_numpy()
    if dup.any():
        links = Links(*(x[~dup] for x in (links.left, links.right, links.prob, links.rule, links.levels,
                                          links.weight, links.tf_adjustment, links.household_adjustment)))
    return links, review


def union_pairs(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted union of two sets of (left < right) pairs."""
    from personalization_assets.identity.blocking import sorted_unique

    allp = sorted_unique(np.concatenate([a.astype(np.int64) * n + b, c.astype(np.int64) * n + d]), in_place=True)
    return (allp // n).astype(np.int32), (allp % n).astype(np.int32)
