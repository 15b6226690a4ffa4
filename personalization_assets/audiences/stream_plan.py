"""The stream compilation's plan: what an arriving event touches, and how a rule is evaluated.

Compiled once per set of audiences, so that the per-event work is lookups:

- **Slots.** Every distinct (event filter, column) a condition reads is a slot. An event is routed
  by its name to the few slots that mention it (those filtered on one property found by a lookup
  of the event's value, the others by their test), and its time
  (and the column's value) inserted into the key's sorted list for that slot. Nothing else of the
  event is kept.
- **Measures.** Every distinct aggregate (count / sum / exists of a slot in a window, with or
  without `not_followed_by`; a computed trait) is one function of (key state, instant). A window
  is two bisections of a sorted list, not a rescan; audiences that share a measure (fifty
  audiences on the same `most_frequent` trait) compute it once per evaluation.
- **Timers.** Each slot knows at which offsets after an event's time it can change which
  audiences (the window edges of the conditions reading it), as a bit mask of audiences closed
  under exclusion (an audience excluding a changed one is re-evaluated too). A timer re-evaluates
  only those audiences.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from .model import Audience, ComputedCond, ComputedTrait, EventCond, EventFilter, Group, Rule, Window
from .stream_measures import (_MISSING, Measure, KeyState, Shared, count, last, most_frequent, total,
                              unfollowed)

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
Predicate = Callable[[dict, KeyState, float], bool]


@dataclass
class Plan:
    """Everything AudienceStream needs, derived from the audiences (in evaluation order)."""
    audiences: list[Audience]
    # event name -> Route: the slots it may go into
    routes: dict[str, Route] = field(default_factory=dict)
    slot_offsets: list[dict[float, int]] = field(default_factory=list)  # slot -> {offset: audience mask}
    slot_horizon: list[float | None] = field(default_factory=list)  # how far back a slot's events matter
    predicates: list[Predicate] = field(default_factory=list)
    exclusions: list[tuple[int, ...]] = field(default_factory=list)
    comparisons: list[tuple | None] = field(default_factory=list)  # (measure id, measure, op, value)
    closure: list[int] = field(default_factory=list)  # audience -> mask of itself and its excluders
    vacuous: int = 0  # audiences true for a key with no events (decided at the key's first event)
    offsets: list[float] = field(default_factory=list)  # every offset, for the equivalence instants

    @property
    def everyone(self) -> int:
        return (1 << len(self.audiences)) - 1

    def steps(self, mask: int) -> list:
        """The evaluation of the audiences in `mask`, in order: an audience index, or a Shared
        (the audiences that are one comparison on the same measure) at the place of the first."""
        out: list = []
        shared: dict[int, list] = {}
        for i in range(len(self.audiences)):
            if not mask >> i & 1:
                continue
            cmp = self.comparisons[i]
            if cmp is None:
                out.append(i)
                continue
            if cmp[0] not in shared:
                shared[cmp[0]] = []
                out.append((cmp[0], cmp[1], shared[cmp[0]]))
            shared[cmp[0]].append((1 << i, cmp[2], cmp[3]))
        return [s if s.__class__ is int else Shared(*s) for s in out]

    def close(self, mask: int) -> int:
        out, i = 0, 0
        while mask:
            if mask & 1:
                out |= self.closure[i]
            mask >>= 1
            i += 1
        return out


class Route(NamedTuple):
    """The slots of one event name. A slot whose filter is one property's values is found by a
    lookup of the event's value (`keyed`: property -> value -> [(slot, None, column)]), so an event costs
    the same whatever the number of audiences filtering on that property (twenty category counts:
    one lookup, not twenty tests); the other slots are tested one by one (`tested`)."""
    tested: list[tuple[int, Callable[[dict], bool] | None, str | None]]
    keyed: dict[str, dict[Any, list[tuple[int, None, str | None]]]]  # no test left: the value matched


def _one_column(f: EventFilter) -> tuple[str, list] | None:
    """(property, values) when the filter is one property's hashable values, else None."""
    if len(f.where) != 1:
        return None
    (col, vals), = f.where
    try:
        frozenset(vals)
    except TypeError:
        return None
    return col, list(vals)


def _where_test(f: EventFilter) -> Callable[[dict], bool] | None:
    """The property filter, compiled once: None when the event name alone decides."""
    if not f.where:
        return None
    tests = []
    for col, vals in f.where:
        try:
            allowed: Any = frozenset(vals)
        except TypeError:  # an unhashable value in a definition: compare one by one
            allowed = vals
        tests.append((col, allowed))
    if len(tests) == 1:
        (col, allowed), = tests
        return lambda props: props.get(col) in allowed
    return lambda props: all(props.get(col) in allowed for col, allowed in tests)


class _Builder:
    def __init__(self, audiences: list[Audience]):
        self.plan = Plan(audiences)
        self.slots: dict[tuple, int] = {}
        self.measures: dict[tuple, Measure] = {}
        self.current = 0  # the bit of the audience being compiled

    def slot(self, f: EventFilter, of: str | None) -> int:
        key = (f, of)
        if key not in self.slots:
            sid = self.slots[key] = len(self.slots)
            self.plan.slot_offsets.append({})
            self.plan.slot_horizon.append(0.0)
            keyed, test = _one_column(f), _where_test(f)
            for name in f.events:
                route = self.plan.routes.setdefault(name, Route([], {}))
                if keyed is None:
                    route.tested.append((sid, test, of))
                    continue
                table = route.keyed.setdefault(keyed[0], {})
                for value in dict.fromkeys(keyed[1]):  # each value once, as in the set of the test
                    table.setdefault(value, []).append((sid, None, of))
        return self.slots[key]

    def touches(self, sid: int, offsets: list[float], reach: float | None) -> None:
        """The current audience changes when an event of `sid` is `offset` old; its events matter
        for `reach` seconds (None: for ever)."""
        for off in offsets:
            table = self.plan.slot_offsets[sid]
            table[off] = table.get(off, 0) | self.current
        old = self.plan.slot_horizon[sid]
        self.plan.slot_horizon[sid] = None if old is None or reach is None else max(old, reach)

    def window(self, sid: int, w: Window, extra: float = 0.0) -> None:
        self.touches(sid, [w.end] + ([w.start] if w.start is not None else []),
                     None if w.start is None else w.start + extra)

    def measure(self, key: tuple, build: Callable[[], Measure]) -> Measure:
        if key not in self.measures:
            self.measures[key] = build()
        return self.measures[key]

    def event(self, c: EventCond) -> Measure:
        of = c.of if c.measure == "sum" else None
        sid = self.slot(c.match, of)
        self.window(sid, c.window, c.follow_within or 0.0)
        if c.not_followed_by is None:
            key = ("plain", sid, c.window)
            return self.measure(key, lambda: total(sid, c.window) if of else count(sid, c.window))
        fid = self.slot(c.not_followed_by, None)
        # a follow-up acts at its own time, and matters as long as the events it can cancel
        self.touches(fid, [0.0], None if c.window.start is None else c.window.start + (c.follow_within or 0.0))
        key = ("unfollowed", sid, c.window, fid, c.follow_within, bool(of))
        return self.measure(key, lambda: unfollowed(sid, c.window, fid, c.follow_within, bool(of)))

    def computed(self, t: ComputedTrait) -> Measure:
        sid = self.slot(t.match, None if t.kind == "count" else t.of)
        self.window(sid, t.window)
        build = {"count": count, "sum": total, "last": last, "most_frequent": most_frequent}[t.kind]
        return self.measure((t.kind, sid, t.window), lambda: build(sid, t.window))

    def comparison(self, rule: Rule) -> tuple[int, Measure, Callable[[Any, Any], bool], Any]:
        """(measure id, measure, operator, value) of a leaf condition."""
        if isinstance(rule, EventCond):
            measure, op, value = self.event(rule), OPS[rule.op], rule.value
        elif isinstance(rule, ComputedCond):
            measure, op, value = self.computed(rule.trait), OPS[rule.op], rule.value
        else:
            raise TypeError(f"not a stream condition: {rule!r}")  # check_streamable runs first
        return id(measure), measure, op, value

    def rule(self, rule: Rule) -> Predicate:
        if isinstance(rule, Group):
            parts = tuple(self.rule(p) for p in rule.parts)
            if rule.joiner == "all":
                def all_of(vals, ks, t):
                    for p in parts:
                        if not p(vals, ks, t):
                            return False
                    return True
                return all_of

            def any_of(vals, ks, t):
                for p in parts:
                    if p(vals, ks, t):
                        return True
                return False
            return any_of
        mid, measure, op, value = self.comparison(rule)

        def leaf(vals, ks, t):
            v = vals.get(mid, _MISSING)
            if v is _MISSING:
                v = vals[mid] = measure(ks, t)
            return v is not None and op(v, value)
        return leaf


def plan_trait(plan: Plan, trait: ComputedTrait) -> Measure:
    """Add one computed trait to an (audience-less) plan: its measure, its slots routed."""
    b = _Builder(plan.audiences)
    b.plan = plan
    return b.computed(trait)


def compile_plan(audiences: list[Audience]) -> Plan:
    """The plan of audiences already in evaluation order (model.ordered) and streamable."""
    b = _Builder(audiences)
    plan = b.plan
    index = {a.name: i for i, a in enumerate(audiences)}
    for i, a in enumerate(audiences):
        b.current = 1 << i
        plan.predicates.append(b.rule(a.rule))
        plan.exclusions.append(tuple(index[x] for x in a.exclusions))
        # one comparison, nothing excluded: evaluated inline, with the others on the same measure
        plan.comparisons.append(b.comparison(a.rule) if not isinstance(a.rule, Group) and not a.exclusions
                                else None)
    plan.closure = [1 << i for i in range(len(audiences))]
    for i in reversed(range(len(audiences))):  # excluders come after what they exclude
        for j in range(i + 1, len(audiences)):
            if i in plan.exclusions[j]:
                plan.closure[i] |= plan.closure[j]
    for sid, table in enumerate(plan.slot_offsets):
        plan.slot_offsets[sid] = {off: plan.close(mask) for off, mask in table.items()}
    for i, pred in enumerate(plan.predicates):
        if pred({}, {}, 0.0):  # no events: the same at every instant
            plan.vacuous |= plan.closure[i]
    plan.offsets = sorted({0.0}.union(*(t.keys() for t in plan.slot_offsets)))
    return plan
