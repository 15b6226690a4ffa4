"""Compile audiences to the stream: keyed state (each customer's recent events) with timers.

Membership only changes at an event's time plus a declared offset (window edges, `between`
bounds), so each arriving event schedules timers at those instants and the key is re-evaluated
there, for the audiences that event can change (`stream_plan` works out which, once). The
watermark is `frontier - lateness`: every instant before it is final, because an event may
arrive at most `lateness` after its timestamp. An event later than that still updates the
state, but the instants already decided stay as they were: that is a "late event" disagreement.

Conditions on profile traits are batch-only: compiling them raises StreamUnsupported, one line
naming the condition.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from typing import Any, Iterable, NamedTuple

from .model import Audience, ComputedTrait, TraitCond, conditions, ordered
from .stream_measures import _MISSING
from .stream_plan import compile_plan, plan_trait


_INF = float("inf")
TIMER_BUCKET = 60.0  # seconds of timers per unsorted list (see AudienceStream.__init__)


class StreamUnsupported(ValueError):
    """The definition cannot run in the stream; the message names the condition."""


@dataclass(frozen=True, order=True)
class StreamEvent:
    ts: float  # event time, epoch seconds
    customer_key: str = field(compare=False)
    event: str = field(compare=False)
    received: float = field(compare=False, default=0.0)
    props: dict[str, Any] = field(compare=False, default_factory=dict)


class Change(NamedTuple):  # a tuple: cheap to make, as a replay makes several per event
    audience: str
    customer_key: str
    change: str  # entered | exited
    at: float  # the instant (event time) membership changed
    late: bool = False  # decided at the watermark because an event came later than the lateness


_change = tuple.__new__  # Change(...) at C speed, all fields given


def check_streamable(audience: Audience) -> None:
    for cond in conditions(audience.rule):
        if isinstance(cond, TraitCond):
            raise StreamUnsupported(f"audience {audience.name!r}: condition {cond.text} uses profile "
                                    f"trait {cond.trait!r}, which is batch-only; use an event condition")


class _Key:
    """One customer's state: per slot, sorted event times and values; the earliest time seen;
    the earliest instant at which one of its events can be forgotten."""
    __slots__ = ("first", "slots", "expires")

    def __init__(self, first: float):
        self.first = first
        self.slots: dict[int, list] = {}
        self.expires = float("inf")


class AudienceStream:
    """Entry and exit decisions for a set of audiences, as events arrive in receive order."""

    def __init__(self, audiences: Iterable[Audience], lateness: float | None = None,
                 timer_bucket: float = TIMER_BUCKET):
        self.audiences = ordered(list(audiences))
        for a in self.audiences:
            check_streamable(a)
        self.lateness = max((a.lateness for a in self.audiences), default=0.0) if lateness is None else lateness
        self.plan = compile_plan(self.audiences)
        self.offsets = self.plan.offsets
        self.state: dict[str, _Key] = {}
        self._in: dict[str, int] = {}  # key -> the audiences it is in, one bit each (plan order)
        self._excluded = [sum(1 << x for x in xs) for xs in self.plan.exclusions]
        # Timers (instant, key, audiences to re-evaluate) before `_open_until` are in the heap
        # `_near`; later ones wait unsorted in `_far`, one list per `timer_bucket` seconds, and
        # go into the heap when the watermark reaches their bucket. Most timers are days ahead
        # (window edges): one heap of all of them made every pop a walk down a tree of millions
        # (cache misses, the replay's largest cost at 1M keys); the order of pops is the same.
        self._near: list[tuple[float, str, int]] = []
        self._far: dict[float, list[tuple[float, str, int]]] = {}
        self._buckets: list[float] = []  # heap of the keys of `_far`
        self._bucket = float(timer_bucket)
        self._open_until = -_INF
        self.watermark: float | None = None
        self._timer_plans: dict[tuple[int, ...], tuple[list[tuple[float, int]], float | None]] = {}
        self._steps: dict[int, list] = {}
        self._names = [a.name for a in self.audiences]
        self._routes = self.plan.routes
        self._vacuous = self.plan.vacuous

    @property
    def timers(self) -> list[tuple[float, str, int]]:
        """Every pending timer (instant, key, audiences), in firing order."""
        return sorted(self._near + [t for b in self._far.values() for t in b])

    @property
    def members(self) -> dict[str, set[str]]:
        """The members of every audience now (as of the last decided instant)."""
        out: dict[str, set[str]] = {name: set() for name in self._names}
        for key, mask in self._in.items():
            for i, name in enumerate(self._names):
                if mask >> i & 1:
                    out[name].add(key)
        return out

    def process(self, ev: StreamEvent) -> list[Change]:
        key, ts = ev.customer_key, ev.ts
        ks = self.state.get(key)
        first = 0
        if ks is None:  # a new key: audiences true without events start at its first event
            ks = self.state[key] = _Key(ts)
            first = self._vacuous
        elif ts < ks.first:
            ks.first, first = ts, self._vacuous
        touched = _ingest(ks.slots, self._routes.get(ev.event), ev)
        plan = self._timer_plans.get(touched)
        if plan is None:
            plan = self._timer_plans[touched] = self._plan_timers(touched)
        offsets, horizon = plan
        if horizon is not None and ts + horizon < ks.expires:
            ks.expires = ts + horizon
        wm = self.watermark
        for off, mask in offsets:
            at = ts + off
            if off == 0.0:
                mask |= first
                first = 0
            if wm is None or at >= wm:
                if self._open_until <= at < _INF and at > -_INF:  # `_push` inline: days ahead, the common case
                    b = at // self._bucket
                    waiting = self._far.get(b)
                    if waiting is None:
                        self._far[b] = [(at, key, mask)]
                        heappush(self._buckets, b)
                    else:
                        waiting.append((at, key, mask))
                else:
                    self._push((at, key, mask))
        if first and (wm is None or ts >= wm):
            self._push((ts, key, first))
        if wm is not None and ts < wm:  # too late: decide it now
            out: list[Change] = []
            self._evaluate(key, wm, self.plan.everyone, out, late=True)
            return out
        return []

    def _push(self, timer: tuple[float, str, int]) -> None:
        at = timer[0]
        if at < self._open_until or not -_INF < at < _INF:  # (infinite, nan: the heap, as always)
            heappush(self._near, timer)
            return
        b = at // self._bucket
        waiting = self._far.get(b)
        if waiting is None:
            self._far[b] = [timer]
            heappush(self._buckets, b)
        else:
            waiting.append(timer)

    def _plan_timers(self, slots: tuple[int, ...]) -> tuple[list[tuple[float, int]], float | None]:
        """(offset, audiences) for an event that landed in these slots, offsets merged; and the
        shortest time its events matter in those slots (None: no slot forgets)."""
        merged: dict[float, int] = {}
        for sid in slots:
            for off, mask in self.plan.slot_offsets[sid].items():
                merged[off] = merged.get(off, 0) | mask
        horizons = [h for h in (self.plan.slot_horizon[sid] for sid in slots) if h is not None]
        return sorted(merged.items()), min(horizons) if horizons else None

    def advance(self, frontier: float) -> list[Change]:
        """Everything received up to `frontier` is in: decide every instant before the watermark."""
        mark = frontier - self.lateness
        buckets = self._buckets
        if buckets and buckets[0] * self._bucket < mark:  # open every bucket that starts before it
            near = self._near
            while buckets and buckets[0] * self._bucket < mark:
                b = heappop(buckets)
                near += self._far.pop(b)
                self._open_until = max(self._open_until, (b + 1) * self._bucket)
            heapify(near)
        timers = self._near
        if not timers or timers[0][0] >= mark:  # nothing due: most calls
            if self.watermark is None or mark > self.watermark:
                self.watermark = mark
            return []
        out: list[Change] = []
        while timers and timers[0][0] < mark:
            at, key, mask = heappop(timers)
            while timers and timers[0][0] == at and timers[0][1] == key:  # one evaluation per instant
                mask |= heappop(timers)[2]
            self._evaluate(key, at, mask, out)
        if self.watermark is None or mark > self.watermark:
            self.watermark = mark
        return out

    def _evaluate(self, key: str, t: float, mask: int, out: list[Change], late: bool = False) -> None:
        ks = self.state.get(key)
        if ks is None:
            slots = {}
        else:
            wm = self.watermark
            if ks.expires < (wm if wm is not None and wm < t else t) - self.lateness:
                slots = self._prune(key, ks, t)
            else:
                slots = ks.slots
        steps = self._steps.get(mask)
        if steps is None:
            steps = self.plan.steps(mask)
            if any(s.__class__ is int for s in steps):
                steps = self._steps[mask] = (steps, False)
            else:  # only comparisons on distinct measures (the common case): no table of shared values
                steps = self._steps[mask] = (tuple((s.measure, s.members, ~s.mask) for s in steps), True)
        steps, simple = steps
        was = now = self._in.get(key, 0)
        if simple:
            for measure, members, keep in steps:
                now = (now & keep) | members(measure(slots, t))
        else:
            predicates, excluded = self.plan.predicates, self._excluded
            values: dict[int, Any] = {}  # measures shared by the audiences of this evaluation
            for step in steps:
                if step.__class__ is int:  # exclusions read `now`: excluded audiences come first
                    bit = 1 << step
                    if predicates[step](values, slots, t) and not now & excluded[step]:
                        now |= bit
                    else:
                        now &= ~bit
                    continue
                v = values.get(step.mid, _MISSING)
                if v is _MISSING:
                    v = values[step.mid] = step.measure(slots, t)
                now = (now & ~step.mask) | step.members(v)
        if now == was:
            return
        if now:
            self._in[key] = now
        else:
            del self._in[key]
        changed = now ^ was
        while changed:  # lowest bit first: the audiences' order
            bit = changed & -changed
            changed ^= bit
            out.append(_change(Change, (self._names[bit.bit_length() - 1], key,
                                        "entered" if now & bit else "exited", t, late)))

    def _prune(self, key: str, ks: _Key, t: float) -> dict[int, list]:
        """Forget the key's events that no window can reach any more (bounded state per key);
        done when the key is touched, so a watermark step costs nothing per idle key."""
        wm = self.watermark
        base = (t if wm is None or t < wm else wm) - self.lateness
        horizon = self.plan.slot_horizon
        slots = ks.slots
        expires = _INF
        for sid, (times, values) in list(slots.items()):
            h = horizon[sid]
            if h is None:
                continue
            cut = bisect_left(times, base - h)
            if cut == len(times):
                del slots[sid]
                continue
            if cut:
                del times[:cut]
                if values is not None:
                    del values[:cut]
            if times[0] + h < expires:
                expires = times[0] + h
        ks.expires = expires
        if not slots:
            del self.state[key]
        return slots


def _ingest(slots: dict[int, list], route, ev: StreamEvent) -> tuple[int, ...]:
    """Put the event into the key's slots it matches (`route`: its name's Route, or None); the
    slots it went into."""
    if route is None:
        return ()
    props = ev.props
    candidates = route.tested
    for col, table in route.keyed.items():
        hits = table.get(props.get(col))
        if hits is not None:
            candidates = candidates + hits
    touched = []
    ts = ev.ts
    for sid, test, of in candidates:
        if test is not None and not test(props):
            continue
        value = None
        if of is not None:
            value = props.get(of)
            if value is None:
                continue
        slot = slots.get(sid)
        if slot is None:
            slots[sid] = [[ts], None if of is None else [value]]
        else:
            times = slot[0]
            if ts >= times[-1]:  # the common case: in time order
                times.append(ts)
                if of is not None:
                    slot[1].append(value)
            else:
                i = bisect_right(times, ts)
                times.insert(i, ts)
                if of is not None:
                    slot[1].insert(i, value)
        touched.append(sid)
    return tuple(touched)


def trait_at(trait: ComputedTrait, events: Iterable[StreamEvent], t: float) -> Any:
    """A computed trait's value over one customer's events at instant t, as the stream computes it."""
    plan = compile_plan([])
    measure = plan_trait(plan, trait)
    slots: dict[int, list] = {}
    for ev in events:
        _ingest(slots, plan.routes.get(ev.event), ev)
    return measure(slots, t)


class _Eval:
    """The former per-instant evaluator's interface, for callers that use it as an oracle of
    computed traits (tests): prefer `trait_at`."""

    def __init__(self, events: list[StreamEvent], t: float):
        self.events, self.t = events, t

    def computed(self, trait: ComputedTrait) -> Any:
        return trait_at(trait, self.events, self.t)


def members_at(changes: list[Change], t: float) -> dict[str, set[str]]:
    """Replay decisions up to instant t (inclusive): the stream's membership at t."""
    out: dict[str, set[str]] = {}
    for c in sorted(changes, key=lambda c: c.at):
        if c.at > t:
            break
        group = out.setdefault(c.audience, set())
        (group.add if c.change == "entered" else group.discard)(c.customer_key)
    return out
