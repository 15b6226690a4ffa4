"""Clusters from accepted links, consistent as a whole, not just link by link.

Transitive closure is what makes one bad link glue two people together. So links are added
strongest first (Kruskal), and a union of two groups is refused when the merged cluster
would be inconsistent:
- two of its members conflict (first names or birth dates that cannot be one person), checked
  on every pair across the two groups, not only on the link;
- it would break an identity limit (at most N e-mails, N phones, one id of a unique source);
- it holds a cannot-link pair (a person's unmerge decision);
- it would grow past the size cap;
- the link is weak (below ``strong``) and it would chain: a weak link may bridge a singleton
  to a group, but not two groups of several records, and not into a group that already hangs
  on a weak link unless the newcomer is itself linked to most of that group.
Refusing the union at the weakest link that would break a rule *is* the split "on the weakest
evidence": the cluster falls apart there and nowhere else. Refused links go to review. A record
without a birth date that fits both sides of such a conflict (a father and his son) joins neither.
A person's link decision (``forced``) overrides every rule but a cannot-link.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Components up to this size get all their member pairs assessed in one vectorized call;
# larger ones (only ever before the guards cut them) are assessed per union, lazily.
BATCH_COMPONENT = 2000


@dataclass
class Edges:
    left: np.ndarray
    right: np.ndarray
    prob: np.ndarray  # links that must not be second-guessed sort first: above 1.0

    def take(self, mask: np.ndarray) -> "Edges":
        return Edges(self.left[mask], self.right[mask], self.prob[mask])


@dataclass
class Rules:
    """What a cluster may hold. ``assess(a, b) -> (conflict, linked)`` judges record pairs;
    ``identities`` maps a limit name to (per-record code, -1 = none; the most distinct codes
    one cluster may hold)."""

    assess: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    identities: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)
    forced: np.ndarray | None = None   # per edge: a person's link decision
    trusted: np.ndarray | None = None  # per edge: carried over unchanged from the last run
    undecidable: np.ndarray | None = None  # per record: lacks what tells two relatives apart


def components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    g = coo_matrix((np.ones(left.size, np.int8), (left, right)), shape=(n, n))
    return connected_components(g, directed=False)[1]


class _Groups:
    """Union-find with the state each rule needs per group. Only merged groups hold entries: a
    record on its own is its own root, with itself as members and its identifiers read from the
    code arrays (an entry per record in four dicts cost ~800 MB at 3M records)."""

    def __init__(self, rules: Rules):
        self.parent: dict[int, int] = {}  # merged records only; a root is absent
        self._members: dict[int, list[int]] = {}
        self._weak: set[int] = set()
        self._codes = {name: codes for name, (codes, _) in rules.identities.items()}
        self._ids: dict[str, dict[int, tuple]] = {name: {} for name in rules.identities}

    def find(self, x: int) -> int:
        parent = self.parent
        while x in parent:
            up = parent[x]
            if up in parent:  # path halving
                parent[x] = parent[up]
            x = up
        return x

    def members(self, root: int) -> list[int]:
        return self._members.get(root) or [root]

    def weak(self, root: int) -> bool:
        return root in self._weak

    def ids(self, name: str, root: int) -> tuple:
        """The distinct codes of identity ``name`` the group holds."""
        held = self._ids[name].get(root)
        if held is None:
            code = int(self._codes[name][root])
            held = (code,) if code >= 0 else ()
        return held

    def union(self, ra: int, rb: int, weak: bool) -> None:
        for name, held in self._ids.items():
            merged = set(self.ids(name, ra)) | set(self.ids(name, rb))
            held.pop(rb, None)
            held[ra] = tuple(merged)  # a tuple: a third of a set's memory
        self._members[ra] = self.members(ra) + self._members.pop(rb, [rb])
        if weak or ra in self._weak or rb in self._weak:
            self._weak.add(ra)
        self._weak.discard(rb)
        self.parent[rb] = ra


def pair_key(x: int, y: int) -> int:
    """One int per unordered record pair (an int costs a third of a tuple of two in a set)."""
    return (min(x, y) << 32) | max(x, y)


def _pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    return (np.minimum(a, b) << 32) | np.maximum(a, b)


class _Pairs:
    """Conflict and link verdicts of record pairs (pair_key), assessed in batches and remembered.
    Pairs assessed in bulk are known from a sorted array (8 bytes a pair: the components of a
    million household records hold millions of pairs), the few assessed per union from a set."""

    BULK = 10_000

    def __init__(self, rules: Rules):
        self.rules = rules
        self.conflict: set[int] = set()
        self.linked: set[int] = set()
        self._bulk = np.empty(0, np.int64)
        self._known: set[int] = set()

    def mark_known(self, keys: np.ndarray, bulk: bool | None = None) -> None:
        if keys.size >= self.BULK if bulk is None else bulk:
            self._bulk = np.unique(np.concatenate([self._bulk, keys]))
        else:
            self._known.update(keys.tolist())

    def unknown(self, keys: np.ndarray) -> np.ndarray:
        if self._bulk.size:
            pos = np.minimum(np.searchsorted(self._bulk, keys), self._bulk.size - 1)
            keys = keys[self._bulk[pos] != keys]
        if self._known and keys.size:
            keys = keys[np.fromiter((k not in self._known for k in keys.tolist()), bool, keys.size)]
        return keys

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.add_keys(_pair_keys(a, b))

    def add_keys(self, keys: np.ndarray) -> None:
        todo = self.unknown(keys)
        if not todo.size or self.rules.assess is None:
            return
        conflict, linked = self.rules.assess(todo >> 32, todo & 0xFFFFFFFF)
        self.mark_known(todo)
        self.conflict.update(todo[np.asarray(conflict, bool)].tolist())
        self.linked.update(todo[np.asarray(linked, bool)].tolist())

    def cross(self, xs: list[int], ys: list[int]) -> list[int]:
        if len(xs) * len(ys) > 64:
            keys = _pair_keys(np.repeat(xs, len(ys)), np.tile(ys, len(xs)))
            self.add_keys(keys)
            return keys.tolist()
        keys = [pair_key(x, y) for x in xs for y in ys]  # most unions: small groups, no numpy call
        missing = [k for k in keys if k not in self._known]
        if missing:
            self.add_keys(np.array(missing, np.int64))
        return keys


def cluster(n: int, e: Edges, strong: float, max_size: int, cannot_link: set[tuple[int, int]] = frozenset(),
            rules: Rules | None = None, _known: "_Pairs | None" = None) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Cluster labels per record, review rows (left, right, reason, score), and a mask of the
    edges that ended up inside a cluster (the evidence of the merge)."""
    rules = rules or Rules()
    forced = rules.forced if rules.forced is not None else np.zeros(e.prob.size, bool)
    trusted = rules.trusted if rules.trusted is not None else np.zeros(e.prob.size, bool)
    comp = components(n, e.left, e.right)
    size = np.bincount(comp, minlength=n)
    nodes = np.flatnonzero(size[comp] >= 2)
    groups, pairs = _Groups(rules), _known or _Pairs(rules)
    cannot = {pair_key(a, b) for a, b in cannot_link}
    review: list[tuple[int, int, str, float]] = []
    ambiguous: set[int] = set()
    for lab in np.flatnonzero(size > max_size):
        review.extend((int(x), -1, "cluster_too_large", float(size[lab])) for x in np.flatnonzero(comp == lab))
    edge_keys = _pair_keys(e.left, e.right)
    pairs.linked.update(edge_keys.tolist())
    if rules.assess is not None:  # the caller assessed every link: none of them conflicts
        pairs.mark_known(edge_keys, bulk=False)  # looked up one union at a time
        _preassess(pairs, comp, size, e, trusted)

    for i in np.lexsort((-e.prob, comp[e.left])):
        x, y, p = int(e.left[i]), int(e.right[i]), float(e.prob[i])
        ra, rb = groups.find(x), groups.find(y)
        if ra == rb:
            continue
        a_mem, b_mem = groups.members(ra), groups.members(rb)
        if cannot and any(pair_key(u, v) in cannot for u in a_mem for v in b_mem):
            continue
        if not forced[i]:
            reason = _refusal(groups, pairs, ra, rb, x, y, p, strong, max_size, trusted[i], rules)
            if reason:
                if reason != "cluster_too_large":  # its records are all reported above
                    review.append((x, y, reason, p))
                if reason == "conflict" and rules.undecidable is not None:
                    ambiguous |= _fits_both(pairs, groups, x, y, ra, rb, rules.undecidable)
                continue
        if len(a_mem) < len(b_mem):
            ra, rb = rb, ra
        groups.union(ra, rb, weak=p < strong and not forced[i])

    if ambiguous and _known is None:
        # a record that fits two people who cannot be one joins neither (father and son, and
        # a record of one of them without a birth date)
        drop = (np.isin(e.left, list(ambiguous)) | np.isin(e.right, list(ambiguous))) & ~forced
        kept = Rules(rules.assess, rules.identities, forced[~drop], trusted[~drop], rules.undecidable)
        labels, more, used_kept = cluster(n, e.take(~drop), strong, max_size, cannot_link, kept, _known=pairs)
        used = np.zeros(e.prob.size, bool)
        used[np.flatnonzero(~drop)] = used_kept
        extra = pd.DataFrame([(x, -1, "ambiguous", float("nan")) for x in sorted(ambiguous)],
                             columns=["left", "right", "reason", "score"])
        return labels, pd.concat([x for x in (more, extra) if len(x)], ignore_index=True), used
    labels = np.arange(n)
    for x in nodes:
        labels[x] = groups.find(int(x))
    labels = pd.factorize(labels)[0]
    used = labels[e.left] == labels[e.right]
    return labels, pd.DataFrame(review, columns=["left", "right", "reason", "score"]), used


def _fits_both(pairs: _Pairs, groups: _Groups, x: int, y: int, ra: int, rb: int, undecidable) -> set[int]:
    """Endpoints of a link refused on a conflict that lack what would tell the two sides apart
    and conflict with nobody on the other side: they match two people who cannot be one."""
    out = set()
    for end, other in ((x, rb), (y, ra)):
        if undecidable[end] and len(groups.members(groups.find(end))) > 1 and \
                not any(c in pairs.conflict for c in pairs.cross([end], groups.members(other))):
            out.add(end)
    return out


def _preassess(pairs: _Pairs, comp, size, e: Edges, trusted) -> None:
    """Assess every pair inside components of 3+ records in one call (a component of 2 is its
    link, already assessed by the caller), except components held together by trusted links."""
    from personalization_assets.identity.blocking import pairs_within_groups

    untrusted = np.zeros(size.size, bool)
    untrusted[comp[e.left[~trusted]]] = True
    batch = np.where((size[comp] >= 3) & (size[comp] <= BATCH_COMPONENT) & untrusted[comp], comp, -1)
    a, b, _ = pairs_within_groups(batch.astype(np.int64), BATCH_COMPONENT)
    if a.size:
        pairs.add(a, b)


def _refusal(groups: _Groups, pairs: _Pairs, ra, rb, x, y, p, strong, max_size, trusted, rules) -> str | None:
    """Why the union of the groups of x and y (through a link of probability p) is refused."""
    a_mem, b_mem = groups.members(ra), groups.members(rb)
    if len(a_mem) + len(b_mem) > max_size:
        return "cluster_too_large"
    for name, (_, limit) in rules.identities.items():
        if len(set(groups.ids(name, ra)) | set(groups.ids(name, rb))) > limit:
            return f"limit:{name}"
    if trusted:
        return None
    if rules.assess is not None and any(c in pairs.conflict for c in pairs.cross(a_mem, b_mem)):
        return "conflict"
    if p >= strong:
        return None
    if len(a_mem) >= 2 and len(b_mem) >= 2:
        return "weak_chain"
    group, single = (ra, b_mem[0]) if len(b_mem) == 1 else (rb, a_mem[0])
    if groups.weak(group):
        members = groups.members(group)
        support = sum(pair_key(single, m) in pairs.linked for m in members)
        if 2 * support <= len(members):
            return "weak_chain"
    return None
