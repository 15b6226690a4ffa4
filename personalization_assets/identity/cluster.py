"""Connected components with guards against over-merging.

Transitive closure is what makes one bad link glue two people together, so:
- a weak link (below the strong threshold) may not bridge two multi-record groups that
  each hang together through strong links; such links go to review instead;
- a component larger than the maximum size is rebuilt greedily from its strongest links
  with a size cap, and its records go to review;
- cannot-link pairs (from unmerges) are honoured the same greedy way.
Greedy rebuilding runs only on the few affected components, so it may loop in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass
class Edges:
    left: np.ndarray
    right: np.ndarray
    prob: np.ndarray  # exact-rule edges carry 1.0 + a small rank so they sort first

    def take(self, mask: np.ndarray) -> "Edges":
        return Edges(self.left[mask], self.right[mask], self.prob[mask])


def components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    g = coo_matrix((np.ones(left.size, np.int8), (left, right)), shape=(n, n))
    return connected_components(g, directed=False)[1]


def _greedy(nodes: np.ndarray, e: Edges, cap: int, cannot: set[tuple[int, int]]) -> dict[int, int]:
    """Kruskal by descending probability; refuse unions over the cap or across a cannot-link."""
    parent = {int(x): int(x) for x in nodes}
    members = {int(x): {int(x)} for x in nodes}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in np.argsort(-e.prob, kind="stable"):
        ra, rb = find(int(e.left[i])), find(int(e.right[i]))
        if ra == rb or len(members[ra]) + len(members[rb]) > cap:
            continue
        if cannot and any((x, y) in cannot or (y, x) in cannot for x in members[ra] for y in members[rb]):
            continue
        parent[rb] = ra
        members[ra] |= members.pop(rb)
    return {x: find(x) for x in parent}


def cluster(n: int, e: Edges, strong: float, max_size: int,
            cannot_link: set[tuple[int, int]] = frozenset()) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Cluster labels per record, review rows, and a mask of the edges actually used."""
    review = []
    is_strong = e.prob >= strong
    s_lab = components(n, e.left[is_strong], e.right[is_strong])
    s_size = np.bincount(s_lab, minlength=n)
    # a weak link may attach a record to a group, never glue two groups together
    weak = np.flatnonzero(~is_strong & (s_lab[e.left] != s_lab[e.right]))
    la, lb = s_lab[e.left[weak]], s_lab[e.right[weak]]
    bridge = (s_size[la] >= 2) & (s_size[lb] >= 2)
    used = is_strong | ~np.isin(np.arange(e.prob.size), weak[bridge])
    for i in weak[bridge]:
        review.append((int(e.left[i]), int(e.right[i]), "weak_chain", float(e.prob[i])))
    labels = components(n, e.left[used], e.right[used])

    sizes = np.bincount(labels, minlength=n)
    cannot_labels = {labels[a] for a, b in cannot_link if labels[a] == labels[b]}
    bad = set(np.flatnonzero(sizes > max_size).tolist()) | cannot_labels
    for lab in bad:
        nodes = np.flatnonzero(labels == lab)
        inside = used & (labels[e.left] == lab)
        sub = e.take(inside)
        roots = _greedy(nodes, sub, max_size, set(cannot_link))
        for x, r in roots.items():
            labels[x] = n + r  # fresh label space, cannot collide with component ids
        kept = np.array([roots[int(a)] == roots[int(b)] for a, b in zip(sub.left, sub.right)], bool)
        used[np.flatnonzero(inside)[~kept]] = False
        if sizes[lab] > max_size:
            review.extend((int(x), -1, "cluster_too_large", float(sizes[lab])) for x in nodes)
    labels = pd.factorize(labels)[0]
    rv = pd.DataFrame(review, columns=["left", "right", "reason", "score"])
    return labels, rv, used
