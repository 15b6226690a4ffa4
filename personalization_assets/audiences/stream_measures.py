"""The stream compilation's measures: aggregates of one key's events in a window at an instant.

A key's state holds, per slot (an event filter and a column), the sorted times of its matching
events and their values; a window is the index range two bisections find, never a rescan of the
key's history. `Shared` decides together the audiences that compare one measure with a value.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from typing import Any, Callable

from .model import Window

_MISSING = object()  # not computed yet in this evaluation
# A key's state: slot id -> [sorted event times, their column values (None for a count slot)].
KeyState = dict
Measure = Callable[[KeyState, float], Any]


_LADDERS = {  # op -> (bisect, prefix): which thresholds a numeric value passes
    operator.ge: (bisect_right, True), operator.gt: (bisect_left, True),
    operator.le: (bisect_left, False), operator.lt: (bisect_right, False)}


class Shared:
    """Audiences that are each one comparison of the same measure: which hold for a value, found
    by a dict lookup (`=`) or a bisection of sorted thresholds (`<`, `>=` ...), not one by one."""

    def __init__(self, mid: int, measure: Measure, audiences: list[tuple[int, Callable, Any]]):
        self.mid, self.measure = mid, measure
        self.mask = 0
        self.equal: dict[Any, int] = {}
        self.ladders: list[tuple[Callable, bool, list, list[int]]] = []
        self.others: list[tuple[int, Callable, Any]] = []  # compared one by one
        self.numeric: list[tuple[int, Callable, Any]] = []  # the ladders' audiences, for non-numbers
        steps: dict[Callable, list] = {}
        for bit, op, value in audiences:
            self.mask |= bit
            if op is operator.eq and _hashable(value):
                self.equal[value] = self.equal.get(value, 0) | bit
            elif op in _LADDERS and value.__class__ in (int, float) and value == value:
                steps.setdefault(op, []).append((value, bit))
                self.numeric.append((bit, op, value))
            else:
                self.others.append((bit, op, value))
        for op, pairs in steps.items():
            pairs.sort(key=lambda p: p[0])
            find, prefix = _LADDERS[op]
            bits = [b for _, b in pairs]
            # masks[j]: the audiences a value at bisection point j passes
            masks = [_or(bits[:j]) if prefix else _or(bits[j:]) for j in range(len(bits) + 1)]
            self.ladders.append((find, prefix, [v for v, _ in pairs], masks))
        if not (self.ladders or self.numeric or self.others):  # only `=`: one lookup
            self.members = self._equal_only  # type: ignore[method-assign]

    def _equal_only(self, v: Any) -> int:
        if v is None:
            return 0
        return self.equal.get(v, 0) if self.equal else 0

    def members(self, v: Any) -> int:
        """The mask of these audiences that hold when the measure is `v`."""
        if v is None:
            return 0
        out = self.equal.get(v, 0) if self.equal else 0
        if v.__class__ in (int, float) and v == v:
            for find, _, thresholds, masks in self.ladders:
                out |= masks[find(thresholds, v)]
        else:
            for bit, op, value in self.numeric:
                if op(v, value):
                    out |= bit
        for bit, op, value in self.others:
            if op(v, value):
                out |= bit
        return out


def _or(bits: list[int]) -> int:
    out = 0
    for b in bits:
        out |= b
    return out


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return value == value  # NaN never equals, not even itself: compare it one by one


def count(sid: int, w: Window) -> Measure:
    # a window holds the events with t - start < ts <= t - end: two bisections, written inline in
    # every measure (a helper's call per evaluation was a tenth of the replay)
    start, end = w.start, w.end

    def count(ks, t):
        s = ks.get(sid)
        if s is None:
            return 0
        ts = s[0]
        hi = bisect_right(ts, t - end)
        return hi if start is None else hi - bisect_right(ts, t - start, 0, hi)
    return count


def total(sid: int, w: Window) -> Measure:
    start, end = w.start, w.end

    def total(ks, t):
        s = ks.get(sid)
        if s is None:
            return 0
        ts = s[0]
        hi = bisect_right(ts, t - end)
        return sum(s[1][0 if start is None else bisect_right(ts, t - start, 0, hi):hi])
    return total


def unfollowed(sid: int, w: Window, fid: int, within: float | None, summed: bool) -> Measure:
    """Count (or sum) of the window's events with no follow-up after them, up to t (and before
    their time plus `within`). The first follow-up after an event decides: later ones only fail
    the bounds more."""
    start, end = w.start, w.end

    def measure(ks, t):
        s = ks.get(sid)
        if s is None:
            return 0
        ts = s[0]
        hi = bisect_right(ts, t - end)
        lo = 0 if start is None else bisect_right(ts, t - start, 0, hi)
        if lo == hi:
            return 0
        f = ks.get(fid)
        if f is None:
            return sum(s[1][lo:hi]) if summed else hi - lo
        fts, n, out = f[0], len(f[0]), 0
        for i in range(lo, hi):
            e = ts[i]
            j = bisect_right(fts, e)
            if j < n and fts[j] <= t and (within is None or fts[j] < e + within):
                continue
            out += s[1][i] if summed else 1
        return out
    return measure


def last(sid: int, w: Window) -> Measure:
    start, end = w.start, w.end

    def last(ks, t):
        s = ks.get(sid)
        if s is None:
            return None
        ts, vals = s
        hi = bisect_right(ts, t - end)
        lo = 0 if start is None else bisect_right(ts, t - start, 0, hi)
        if lo == hi:
            return None
        best, i = vals[hi - 1], hi - 2  # ties at one instant: the greatest value, as in SQL
        while i >= lo and ts[i] == ts[hi - 1]:
            best = max(best, vals[i])
            i -= 1
        return best
    return last


def most_frequent(sid: int, w: Window) -> Measure:
    start, end = w.start, w.end

    def most_frequent(ks, t):
        s = ks.get(sid)
        if s is None:
            return None
        ts = s[0]
        hi = bisect_right(ts, t - end)
        lo = 0 if start is None else bisect_right(ts, t - start, 0, hi)
        if hi - lo < 2:
            return s[1][lo] if hi > lo else None
        # sorted, equal values are neighbours: the first longest run is the most frequent, ties
        # going to the smallest value, as in SQL (order by count desc, value asc)
        run = sorted(s[1][lo:hi])
        best, best_n, cur, n = None, 0, run[0], 0
        for v in run:
            if v == cur:
                n += 1
            else:
                if n > best_n:
                    best, best_n = cur, n
                cur, n = v, 1
        return cur if n > best_n else best
    return most_frequent
