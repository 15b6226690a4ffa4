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
from array import array
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
    """Union-find with what each rule needs of a group, in flat arrays of a few bytes a record:
    the parent, the members as a linked list (each record's next, a root's last), and whether
    the group hangs on a weak link. A root heads its list. A group's identifiers are read from
    its members' codes when a union asks (dicts, lists and tuples per group held ~1.1 GB at
    10M records)."""

    def __init__(self, n: int, rules: Rules):
        self.parent = array("i", np.arange(n, dtype=np.int32).tobytes())
        self._next = array("i", np.full(n, -1, np.int32).tobytes())
        self._last = array("i", np.arange(n, dtype=np.int32).tobytes())
        self._weak = bytearray(n)
        self._codes = {name: array("q", np.asarray(codes, np.int64).tobytes())
                       for name, (codes, _) in rules.identities.items()}

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    def members(self, root: int) -> list[int]:
        out, nxt, x = [root], self._next, self._next[root]
        while x >= 0:
            out.append(x)
            x = nxt[x]
        return out

    def weak(self, root: int) -> bool:
        return bool(self._weak[root])

    def distinct(self, name: str, members: list[int]) -> int:
        """How many distinct codes of identity ``name`` the records ``members`` hold."""
        codes = self._codes[name]
        return len({codes[m] for m in members} - {-1})

    def union(self, ra: int, rb: int, weak: bool) -> None:
        self._next[self._last[ra]] = rb
        self._last[ra] = self._last[rb]
        self._weak[ra] = weak or self._weak[ra] or self._weak[rb]
        self.parent[rb] = ra


def pair_key(x: int, y: int) -> int:
    """One int per unordered record pair (an int costs a third of a tuple of two in a set)."""
    return (min(x, y) << 32) | max(x, y)


def _pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    return (np.minimum(a, b) << 32) | np.maximum(a, b)


class _KeySet:
    """A set of pair keys: those added in bulk in a sorted array (8 bytes a key), the few added
    one union at a time in a set (a Python int in a set costs ~70 bytes)."""

    BULK = 10_000

    def __init__(self):
        self._sorted = np.empty(0, np.int64)
        self._few: set[int] = set()

    def add(self, keys: np.ndarray) -> None:
        if keys.size >= self.BULK:
            self._sorted = np.union1d(self._sorted, keys)
        else:
            self._few.update(keys.tolist())

    def __contains__(self, key: int) -> bool:
        if key in self._few:
            return True
        i = int(self._sorted.searchsorted(key))
        return i < self._sorted.size and int(self._sorted[i]) == key

    def isin(self, keys: np.ndarray) -> np.ndarray:
        out = np.zeros(keys.size, bool)
        if self._sorted.size:
            out = self._sorted[np.minimum(np.searchsorted(self._sorted, keys), self._sorted.size - 1)] == keys
        if self._few and keys.size:
            out |= np.fromiter((k in self._few for k in keys.tolist()), bool, keys.size)
        return out


class _Pairs:
    """Conflict and link verdicts of record pairs (pair_key), assessed in batches and remembered:
    the components of a million household records hold millions of pairs."""

    def __init__(self, rules: Rules):
        self.rules = rules
        self.known, self.conflict, self.linked = _KeySet(), _KeySet(), _KeySet()

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.add_keys(_pair_keys(a, b))

    def add_keys(self, keys: np.ndarray) -> None:
        todo = keys[~self.known.isin(keys)]
        if not todo.size or self.rules.assess is None:
            return
        conflict, linked = self.rules.assess(todo >> 32, todo & 0xFFFFFFFF)
        self.known.add(todo)
        self.conflict.add(todo[np.asarray(conflict, bool)])
        self.linked.add(todo[np.asarray(linked, bool)])

    def cross(self, xs: list[int], ys: list[int]) -> list[int] | np.ndarray:
        """The keys of every pair of xs and ys, each assessed (a list when few, else an array)."""
        if len(xs) * len(ys) > 64:
            keys = _pair_keys(np.repeat(xs, len(ys)), np.tile(ys, len(xs)))
            self.add_keys(keys)
            return keys
        keys = [pair_key(x, y) for x in xs for y in ys]  # most unions: small groups, no numpy call
        missing = [k for k in keys if k not in self.known]
        if missing:
            self.add_keys(np.array(missing, np.int64))
        return keys

    def any_conflict(self, xs: list[int], ys: list[int]) -> bool:
        keys = self.cross(xs, ys)
        if isinstance(keys, np.ndarray):
            return bool(self.conflict.isin(keys).any())
        return any(k in self.conflict for k in keys)


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
    groups, pairs = _Groups(n, rules), _known or _Pairs(rules)
    cannot = {pair_key(a, b) for a, b in cannot_link}
    review: list[tuple[int, int, str, float]] = []
    ambiguous: set[int] = set()
    for lab in np.flatnonzero(size > max_size):
        review.extend((int(x), -1, "cluster_too_large", float(size[lab])) for x in np.flatnonzero(comp == lab))
    edge_keys = _pair_keys(e.left, e.right)
    pairs.linked.add(edge_keys)
    if rules.assess is not None:  # the caller assessed every link: none of them conflicts
        pairs.known.add(edge_keys)
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
            reason = _refusal(groups, pairs, ra, rb, a_mem, b_mem, p, strong, max_size, trusted[i], rules)
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
                not pairs.any_conflict([end], groups.members(other)):
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


def _refusal(groups: _Groups, pairs: _Pairs, ra, rb, a_mem, b_mem, p, strong, max_size, trusted,
             rules) -> str | None:
    """Why the union of groups ra and rb (members a_mem, b_mem; through a link of probability p)
    is refused."""
    if len(a_mem) + len(b_mem) > max_size:
        return "cluster_too_large"
    for name, (_, limit) in rules.identities.items():
        if groups.distinct(name, a_mem + b_mem) > limit:
            return f"limit:{name}"
    if trusted:
        return None
    if rules.assess is not None and pairs.any_conflict(a_mem, b_mem):
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
