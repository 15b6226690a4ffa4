"""Compile audiences to the stream: keyed state (each customer's recent events) with timers.

Membership only changes at an event's time plus a declared offset (window edges, `between`
bounds), so each arriving event schedules timers at those instants and the key is re-evaluated
there. The watermark is `frontier - lateness`: every instant before it is final, because an event
may arrive at most `lateness` after its timestamp. An event later than that still updates the
state, but the instants already decided stay as they were: that is a "late event" disagreement.

Conditions on profile traits are batch-only: compiling them raises StreamUnsupported, one line
naming the condition.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from .model import (Audience, ComputedCond, ComputedTrait, EventCond, EventFilter, Group, Rule,
                    TraitCond, Window, conditions, ordered)

_OPS = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


class StreamUnsupported(ValueError):
    """The definition cannot run in the stream; the message names the condition."""


@dataclass(frozen=True, order=True)
class StreamEvent:
    ts: float  # event time, epoch seconds
    customer_key: str = field(compare=False)
    event: str = field(compare=False)
    received: float = field(compare=False, default=0.0)
    props: dict[str, Any] = field(compare=False, default_factory=dict)


@dataclass(frozen=True)
class Change:
    audience: str
    customer_key: str
    change: str  # entered | exited
    at: float  # the instant (event time) membership changed
    late: bool = False  # decided at the watermark because an event came later than the lateness


def check_streamable(audience: Audience) -> None:
    for cond in conditions(audience.rule):
        if isinstance(cond, TraitCond):
            raise StreamUnsupported(f"audience {audience.name!r}: condition {cond.text} uses profile "
                                    f"trait {cond.trait!r}, which is batch-only; use an event condition")


def _matches(f: EventFilter, e: StreamEvent) -> bool:
    return e.event in f.events and all(e.props.get(col) in vals for col, vals in f.where)


def _in(w: Window, ts: float, t: float) -> bool:
    return ts <= t - w.end and (w.start is None or ts > t - w.start)


class _Eval:
    """Evaluate a rule for one key at instant t over its sorted events."""

    def __init__(self, events: list[StreamEvent], t: float):
        self.events, self.t = events, t

    def selected(self, f: EventFilter, w: Window) -> list[StreamEvent]:
        return [e for e in self.events if e.ts <= self.t and _matches(f, e) and _in(w, e.ts, self.t)]

    def event(self, c: EventCond) -> bool:
        chosen = self.selected(c.match, c.window)
        if c.not_followed_by is not None:
            follows = [f.ts for f in self.events if f.ts <= self.t and _matches(c.not_followed_by, f)]
            chosen = [e for e in chosen if not any(
                e.ts < ft and (c.follow_within is None or ft < e.ts + c.follow_within) for ft in follows)]
        if c.measure == "sum":
            total = sum(e.props.get(c.of) for e in chosen if e.props.get(c.of) is not None)
        else:
            total = len(chosen)
        return _OPS[c.op](total, c.value)

    def computed(self, t: ComputedTrait) -> Any:
        chosen = self.selected(t.match, t.window)
        if t.kind == "count":
            return len(chosen)
        values = [e.props.get(t.of) for e in chosen]
        if t.kind == "sum":
            return sum(v for v in values if v is not None)
        if t.kind == "last":
            pairs = [(e.ts, e.props[t.of]) for e in chosen if e.props.get(t.of) is not None]
            return max(pairs)[1] if pairs else None
        counts = Counter(v for v in values if v is not None)
        return min(counts, key=lambda v: (-counts[v], v)) if counts else None

    def rule(self, rule: Rule) -> bool:
        if isinstance(rule, Group):
            results = (self.rule(p) for p in rule.parts)
            return all(results) if rule.joiner == "all" else any(results)
        if isinstance(rule, EventCond):
            return self.event(rule)
        value = self.computed(rule.trait)
        return value is not None and _OPS[rule.op](value, rule.value)


def _offsets(audience: Audience, name: str | None = None) -> set[float]:
    """When, after the time of an event (named `name`, or any), it can change membership: the
    edges of the windows it can fall in. A follow-up event acts at its own time only."""
    out = {0.0}
    pairs = [(c.match, c.window) for c in conditions(audience.rule) if isinstance(c, EventCond)]
    pairs += [(c.trait.match, c.trait.window) for c in conditions(audience.rule) if isinstance(c, ComputedCond)]
    for match, w in pairs:
        if name is None or name in match.events:
            out.add(w.end)
            if w.start is not None:
                out.add(w.start)
    return out


class AudienceStream:
    """Entry and exit decisions for a set of audiences, as events arrive in receive order."""

    def __init__(self, audiences: Iterable[Audience], lateness: float | None = None):
        self.audiences = ordered(list(audiences))
        for a in self.audiences:
            check_streamable(a)
        self.lateness = max((a.lateness for a in self.audiences), default=0.0) if lateness is None else lateness
        self.offsets = sorted(set().union(*(_offsets(a) for a in self.audiences))) if self.audiences else [0.0]
        unbounded = any(w.start is None for a in self.audiences for w in _all_windows(a))
        self.horizon = None if unbounded else max([0.0, *(_horizon(a) for a in self.audiences)])
        self.state: dict[str, list[StreamEvent]] = {}
        self.members: dict[str, set[str]] = {a.name: set() for a in self.audiences}
        self.timers: list[tuple[float, str]] = []
        self._scheduled: set[tuple[float, str]] = set()
        self.watermark: float | None = None
        self._by_name: dict[str, list[float]] = {}

    def process(self, ev: StreamEvent) -> list[Change]:
        insort(self.state.setdefault(ev.customer_key, []), ev)
        offsets = self._by_name.get(ev.event)
        if offsets is None:
            offsets = self._by_name[ev.event] = sorted(set().union({0.0}, *(_offsets(a, ev.event) for a in self.audiences)))
        for off in offsets:
            self._timer(ev.ts + off, ev.customer_key)
        if self.watermark is not None and ev.ts < self.watermark:  # too late: decide it now
            return self._evaluate(ev.customer_key, self.watermark, late=True)
        return []

    def advance(self, frontier: float) -> list[Change]:
        """Everything received up to `frontier` is in: decide every instant before the watermark."""
        mark = frontier - self.lateness
        out: list[Change] = []
        while self.timers and self.timers[0][0] < mark:
            at, key = heapq.heappop(self.timers)
            self._scheduled.discard((at, key))
            out += self._evaluate(key, at)
        if self.watermark is None or mark > self.watermark:
            self.watermark = mark
        return out

    def _timer(self, at: float, key: str) -> None:
        if (at, key) not in self._scheduled and (self.watermark is None or at >= self.watermark):
            self._scheduled.add((at, key))
            heapq.heappush(self.timers, (at, key))

    def _evaluate(self, key: str, t: float, late: bool = False) -> list[Change]:
        self._prune(key, t)
        ev = _Eval(self.state.get(key, []), t)
        now: dict[str, bool] = {}
        out = []
        for a in self.audiences:
            now[a.name] = ev.rule(a.rule) and not any(now[x] for x in a.exclusions)
            was = key in self.members[a.name]
            if now[a.name] != was:
                (self.members[a.name].add if now[a.name] else self.members[a.name].discard)(key)
                out.append(Change(a.name, key, "entered" if now[a.name] else "exited", t, late))
        return out

    def _prune(self, key: str, t: float) -> None:
        """Forget the key's events that no window can reach any more (bounded state per key);
        done when the key is touched, so a watermark step costs nothing per idle key."""
        events = self.state.get(key)
        if self.horizon is None or not events:
            return
        floor = min(t, self.watermark if self.watermark is not None else t) - self.horizon - self.lateness
        if events[0].ts < floor:
            kept = [e for e in events if e.ts >= floor]
            if kept:
                self.state[key] = kept
            else:
                del self.state[key]


def _all_windows(a: Audience) -> list[Window]:
    out = []
    for c in conditions(a.rule):
        if isinstance(c, EventCond):
            out.append(c.window)
        elif isinstance(c, ComputedCond):
            out.append(c.trait.window)
    return out


def _horizon(a: Audience) -> float:
    """How far back an event can still matter: the widest window plus a follow-up's reach."""
    follow = max([c.follow_within or 0.0 for c in conditions(a.rule) if isinstance(c, EventCond)], default=0.0)
    return max([w.start or 0.0 for w in _all_windows(a)], default=0.0) + follow


def members_at(changes: list[Change], t: float) -> dict[str, set[str]]:
    """Replay decisions up to instant t (inclusive): the stream's membership at t."""
    out: dict[str, set[str]] = {}
    for c in sorted(changes, key=lambda c: c.at):
        if c.at > t:
            break
        group = out.setdefault(c.audience, set())
        (group.add if c.change == "entered" else group.discard)(c.customer_key)
    return out
