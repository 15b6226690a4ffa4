"""Compile an audience to SQL: membership at an instant, and who entered or exited between two.

Values (event names, filter values, thresholds, instants) are always bind parameters (`?`);
the only identifiers interpolated are whitelisted columns (`model.EVENT_COLUMNS`, profile
`TRAITS`) and relation names chosen by the caller. The text is written in DuckDB's dialect
and transpiled by sqlglot for Snowflake, so both run the same plan of conditions.

Relations: `customers` (customer_key), `events` (customer_key, event, ts = epoch seconds,
and the event columns), `traits` (the profile, one row per customer_key), `uplift` (issue 21:
`marts.uplift_scores`, whose `uplift_score` and `uplift_rank` a trait condition may use, so an
audience can target the top-k persuadables: `{trait: uplift_rank, op: "<=", value: 1000}`).
Optionally `staged` (the staged events as they arrive: user_id, anonymous_id, event, timestamp and
the event columns) with `identities` (core.identity_map): counts and sums then read them, per
identity pair first, and resolve each pair to its customer once (`resolved_key`), as `events` would
have resolved each event; `row_conditions` says what still reads `events`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .model import (EVENT_COLUMNS, Audience, ComputedCond, ComputedTrait, DefinitionError, EventCond,
                    EventFilter, Group, Rule, TraitCond, Window, conditions)

# Profile traits (columns of marts.customer_profiles) a trait condition may use, by kind:
# timestamps take windows (within, older_than); numbers and text take values.
TRAITS: dict[str, str] = {
    "last_carted_at": "timestamp", "last_viewed_at": "timestamp", "last_order_at": "timestamp",
    "first_order_at": "timestamp", "last_engaged_at": "timestamp", "customer_created_at": "timestamp",
    "orders_count": "number", "historical_value_minor": "number", "predicted_value_minor": "number",
    "aov_minor": "number", "recency_days": "number", "p_alive": "number", "r_score": "number",
    "f_score": "number", "m_score": "number", "email_opens": "number", "email_clicks": "number",
    "rfm_segment": "text", "country": "text", "locale": "text", "top_category_1": "text",
    "email_opt_in": "boolean",
}


@dataclass(frozen=True)
class Relations:
    customers: str = "aud_customers"
    events: str = "aud_events"
    traits: str = "marts.customer_profiles"
    uplift: str = "marts.uplift_scores"
    staged: str | None = None  # e.g. staging.events: counts and sums per identity pair (module docstring)
    identities: str | None = None  # core.identity_map (identity_type, identity, customer_key), if any


def resolved_key(alias: str, identities: str | None) -> tuple[str, str]:
    """(The customer_key of a row `alias` carrying user_id and anonymous_id, the left joins it
    needs): the customer its user id maps to, else the one its anonymous id maps to, else the user
    id, else 'anon:' and the anonymous id. The anonymous id is looked up only when the user id maps
    to no one (a null key finds nothing, at no cost). The events view, the preview's tables and the
    per-identity measures all resolve with it."""
    if identities is None:
        return f"coalesce({alias}.user_id, 'anon:' || {alias}.anonymous_id)", ""
    mapped = "(select identity, customer_key from {} where identity_type = '{}')"
    joins = (f" left join {mapped.format(identities, 'user_id')} mu on mu.identity = {alias}.user_id"
             f" left join {mapped.format(identities, 'anonymous_id')} ma"
             f" on ma.identity = case when mu.customer_key is null then {alias}.anonymous_id end")
    return f"coalesce(mu.customer_key, ma.customer_key, {alias}.user_id, 'anon:' || {alias}.anonymous_id)", joins


UPLIFT_TRAITS = {"uplift_score": "number", "uplift_rank": "number"}  # batch-only, as every profile trait


class _Builder:
    def __init__(self, rel: Relations, at: float, as_of: datetime, key: str = "c"):
        self.rel, self.at, self.as_of, self.params, self.key = rel, at, as_of, [], key
        self.uses_traits = False
        self.measures: dict[int, str] = {}  # id(condition) -> its per-customer measure (membership_sql)

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def filt(self, f: EventFilter, alias: str) -> str:
        parts = [f"{alias}.event in ({', '.join(self.bind(n) for n in f.events)})"]
        for col, vals in f.where:
            parts.append(f"{alias}.{col} in ({', '.join(self.bind(v) for v in vals)})")
        return " and ".join(parts)

    def window(self, w: Window, alias: str) -> str:
        sql = f"{alias}.ts <= {self.bind(self.at - w.end)}"
        if w.start is not None:
            sql += f" and {alias}.ts > {self.bind(self.at - w.start)}"
        return sql

    def matching(self, f: EventFilter, w: Window) -> str:
        return (f"from {self.rel.events} e where e.customer_key = {self.key}.customer_key and "
                f"{self.filt(f, 'e')} and {self.window(w, 'e')}")

    def event(self, cond: EventCond) -> str:
        if id(cond) in self.measures:
            return f"{self.measures[id(cond)]} {cond.op} {self.bind(cond.value)}"
        agg = f"coalesce(sum(e.{cond.of}), 0)" if cond.measure == "sum" else "count(*)"
        sql = f"(select {agg} {self.matching(cond.match, cond.window)}"
        if cond.not_followed_by is not None:
            sql += (f" and not exists (select 1 from {self.rel.events} f where f.customer_key = e.customer_key"
                    f" and {self.filt(cond.not_followed_by, 'f')} and f.ts > e.ts and f.ts <= {self.bind(self.at)}")
            if cond.follow_within is not None:
                sql += f" and f.ts < e.ts + {self.bind(cond.follow_within)}"
            sql += ")"
        return f"{sql}) {cond.op} {self.bind(cond.value)}"

    def computed(self, t: ComputedTrait, cond: ComputedCond | None = None) -> str:
        if cond is not None and id(cond) in self.measures:
            return self.measures[id(cond)]
        if t.kind == "count":
            return f"(select count(*) {self.matching(t.match, t.window)})"
        if t.kind == "sum":
            return f"(select coalesce(sum(e.{t.of}), 0) {self.matching(t.match, t.window)})"
        if t.kind == "last":  # ties at one instant: the greatest value, as the stream does
            return (f"(select e.{t.of} {self.matching(t.match, t.window)} and e.{t.of} is not null"
                    f" order by e.ts desc, e.{t.of} desc limit 1)")
        return (f"(select e.{t.of} {self.matching(t.match, t.window)} and e.{t.of} is not null"
                f" group by e.{t.of} order by count(*) desc, e.{t.of} asc limit 1)")

    def trait(self, cond: TraitCond) -> str:
        if cond.trait not in {**TRAITS, **UPLIFT_TRAITS} or (cond.ref is not None and cond.ref not in TRAITS):
            raise DefinitionError(f"condition {cond.text}: unknown trait; known: {sorted({**TRAITS, **UPLIFT_TRAITS})}")
        self.uses_traits = True
        col = (f"p.{cond.trait}" if cond.trait in TRAITS else  # no score yet: null, so the condition is not met
               f"(select u.{cond.trait} from {self.rel.uplift} u where u.customer_key = {self.key}.customer_key)")
        if cond.op == "is_null":
            return f"{col} is null"
        if cond.op == "not_null":
            return f"{col} is not null"
        if cond.op in ("within", "older_than"):
            if TRAITS.get(cond.trait) != "timestamp":
                raise DefinitionError(f"condition {cond.text}: {cond.op} needs a timestamp trait")
            bound = self.bind(self.as_of - timedelta(seconds=cond.window))
            return f"{col} {'>=' if cond.op == 'within' else '<='} {bound}"
        if cond.ref is not None:
            return f"{col} {cond.op} p.{cond.ref}"
        if cond.op == "in":
            return f"{col} in ({', '.join(self.bind(v) for v in cond.value)})"
        return f"{col} {cond.op} {self.bind(cond.value)}"

    def rule(self, rule: Rule) -> str:
        if isinstance(rule, Group):
            joiner = " and " if rule.joiner == "all" else " or "
            return "(" + joiner.join(self.rule(p) for p in rule.parts) + ")"
        if isinstance(rule, EventCond):
            return self.event(rule)
        if isinstance(rule, ComputedCond):
            return f"{self.computed(rule.trait, rule)} {rule.op} {self.bind(rule.value)}"
        return self.trait(rule)


def _predicate(b: _Builder, audience: Audience, others: dict[str, Audience]) -> str:
    sql = b.rule(audience.rule)
    for name in audience.exclusions:  # null must not let an excluded person through
        sql += f" and not coalesce(({_predicate(b, others[name], others)}), false)"
    return sql


def _epoch(as_of: datetime) -> float:
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    return as_of.timestamp()


def predicate_sql(audience: Audience, as_of: datetime, relations: Relations = Relations(),
                  key: str = "c") -> tuple[str, list]:
    """(The audience's own rule, without its exclusions, as a predicate over the row aliased `key`
    (its customer_key) with the traits aliased `p`, its bind parameters): for a caller that joins
    the traits and applies exclusions itself, as the segment membership does."""
    b = _Builder(relations, _epoch(as_of), as_of, key)
    return b.rule(audience.rule), b.params


_COMPARE = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _needs_events(rule: Rule) -> list[tuple[EventCond | ComputedCond, EventFilter, Window]] | None:
    """(condition, filter, window) of event reads of which a customer must have at least one for
    `rule` to be true, or None when the rule can hold without any event (a trait condition,
    `exists: false`, `count: "< 3"`). A count or sum with no events is 0; a last or most frequent
    value with none is null, which no comparison meets. `all` needs what any one part needs; `any`
    needs one of what each part needs."""
    if isinstance(rule, Group):
        needs = [_needs_events(p) for p in rule.parts]
        if rule.joiner == "all":
            return next((n for n in needs if n is not None), None)
        return None if any(n is None for n in needs) else [r for n in needs for r in n]
    if isinstance(rule, EventCond):
        return None if _COMPARE[rule.op](0, rule.value) else [(rule, rule.match, rule.window)]
    if isinstance(rule, ComputedCond):
        t = rule.trait
        if t.kind in ("count", "sum"):
            numeric = isinstance(rule.value, (int, float)) and not isinstance(rule.value, bool)
            if not numeric or _COMPARE[rule.op](0, rule.value):
                return None
        return [(rule, t.match, t.window)]
    return None


def _event_conditions(audience: Audience, others: dict[str, Audience]) -> list[EventCond | ComputedCond]:
    """The event and computed conditions of the rule and of its exclusions (as `_predicate` inlines
    them), each once."""
    out: dict[int, EventCond | ComputedCond] = {}

    def visit(a: Audience) -> None:
        for cond in conditions(a.rule):
            if isinstance(cond, (EventCond, ComputedCond)):
                out.setdefault(id(cond), cond)
        for name in a.exclusions:
            visit(others[name])

    visit(audience)
    return list(out.values())


def _is_measure(cond: EventCond | ComputedCond) -> bool:
    """A count or a sum of matching events (compared with a number): one grouped pass computes them all."""
    if isinstance(cond, EventCond):
        return cond.not_followed_by is None
    return (cond.trait.kind in ("count", "sum") and isinstance(cond.value, (int, float))
            and not isinstance(cond.value, bool))


def _read(cond: EventCond | ComputedCond) -> tuple[EventFilter, Window, str, str | None]:
    if isinstance(cond, EventCond):
        return cond.match, cond.window, cond.measure, cond.of
    return cond.trait.match, cond.trait.window, cond.trait.kind, cond.trait.of


@dataclass
class _Plan:
    needs: list[tuple[EventCond | ComputedCond, EventFilter, Window]]  # `_needs_events`, or []
    measured: list[EventCond | ComputedCond]  # computed in the grouped pass
    inner: bool  # the measures cover the needs: an inner join on them drops customers without one
    candidates: bool  # else a semi-join on the needed events does (`relations.events`)


def _plan(audience: Audience, others: dict[str, Audience]) -> _Plan:
    needs = _needs_events(audience.rule) or []
    measured = [c for c in _event_conditions(audience, others) if _is_measure(c)]
    inner = bool(needs) and all(id(c) in {id(m) for m in measured} for c, _, _ in needs)
    # Candidates first, unless a need is a last or most frequent value: its subquery groups the
    # matching events per customer anyway, and a semi-join on them was measured to cost more.
    candidates = bool(needs) and not inner and all(
        isinstance(c, EventCond) or c.trait.kind in ("count", "sum") for c, _, _ in needs)
    return _Plan(needs, measured, inner, candidates)


def row_conditions(audience: Audience, others: dict[str, Audience] | None = None,
                   relations: Relations = Relations()) -> list[EventCond | ComputedCond]:
    """The event and computed conditions (of the rule and of its exclusions) whose events
    `membership_sql` reads from `relations.events`: all of them, unless `relations.staged` computes
    the counts and sums; then the others, and the needed events of the candidates' semi-join."""
    others = {audience.name: audience, **(others or {})}
    everything = _event_conditions(audience, others)
    if relations.staged is None:
        return everything
    plan = _plan(audience, others)
    read = {id(c) for c in everything if not _is_measure(c)}
    if plan.candidates:
        read |= {id(c) for c, _, _ in plan.needs}
    return [c for c in everything if id(c) in read]


SLACK_S = 1.0  # the staged events' coarse bounds are this much wider than the windows


def _staged(b: _Builder, reads: list[tuple[EventFilter, Window]]) -> str:
    """The staged events these reads can match, shaped like `events` but keyed by identity pair:
    coarse bounds on the stored event time (the scan skips whole row groups on them) and event names;
    each measure applies its exact filter and window on ts."""
    names = sorted({n for f, _ in reads for n in f.events})
    sql = (f"e.event in ({', '.join(b.bind(n) for n in names)}) and e.timestamp <= "
           f"{b.bind(b.as_of - timedelta(seconds=min(w.end for _, w in reads) - SLACK_S))}")
    starts = [w.start for _, w in reads]
    if None not in starts:
        sql += f" and e.timestamp >= {b.bind(b.as_of - timedelta(seconds=max(starts) + SLACK_S))}"
    cols = "".join(f", e.{c}" for c in EVENT_COLUMNS)
    return (f"(select e.user_id, e.anonymous_id, e.event, epoch(e.timestamp) as ts{cols} "
            f"from {b.rel.staged} e where {sql})")


def _measures(b: _Builder, measured: list[EventCond | ComputedCond]) -> str:
    """The grouped pass: (customer_key, m0, m1, ...), one row per customer with a matching event.
    Over `staged`, grouped per identity pair first, each pair resolved once, then summed per
    customer (a count or a sum over a customer's events is the sum over its identity pairs)."""
    rel = b.rel
    cols = []
    for i, cond in enumerate(measured):
        f, w, kind, of = _read(cond)
        test = f"{b.filt(f, 'e')} and {b.window(w, 'e')}"
        cols.append(f"sum(case when {test} then e.{of} end) as m{i}" if kind == "sum" else
                    f"sum(case when {test} then 1 else 0 end) as m{i}")
        b.measures[id(cond)] = f"coalesce(a.m{i}, 0)"
    pairs = list(dict.fromkeys((f, w) for f, w, _, _ in map(_read, measured)))
    source = _staged(b, pairs) if rel.staged else rel.events
    reads = " or ".join(f"({b.filt(f, 'e')} and {b.window(w, 'e')})" for f, w in pairs)
    if not rel.staged:
        return f"select e.customer_key, {', '.join(cols)} from {source} e where {reads} group by e.customer_key"
    names = [f"m{i}" for i in range(len(measured))]
    key, joins = resolved_key("g", rel.identities)
    return (f"select r.customer_key, {', '.join(f'sum(r.{m}) as {m}' for m in names)} from ("
            f"select {key} as customer_key, {', '.join(f'g.{m}' for m in names)} from ("
            f"select e.user_id, e.anonymous_id, {', '.join(cols)} from {source} e where {reads} "
            f"group by e.user_id, e.anonymous_id) g{joins}) r group by r.customer_key")


def evidence_leaves(audience: Audience, others: dict[str, Audience] | None = None) -> list[int]:
    """The leaves of the rule (positions in `conditions(rule)`) that `membership_sql(evidence=True)`
    shows: counts and sums of the grouped pass, and profile traits (read from the member's row)."""
    others = {audience.name: audience, **(others or {})}
    measured = {id(c) for c in _plan(audience, others).measured}
    return [i for i, c in enumerate(conditions(audience.rule)) if id(c) in measured or
            (isinstance(c, TraitCond) and c.trait in TRAITS and (c.ref is None or c.ref in TRAITS))]


def membership_sql(audience: Audience, as_of: datetime, others: dict[str, Audience] | None = None,
                   relations: Relations = Relations(), dialect: str = "duckdb",
                   evidence: bool = False) -> tuple[str, list]:
    """(SQL listing the customer_key of every member at `as_of`, its bind parameters).

    Counts and sums of events (without `not_followed_by`) are computed together, per customer, in
    one grouped pass over the events they read (`a`, joined on customer_key; over `staged` when
    given, per identity pair first); the other event conditions stay correlated subqueries. When
    the rule cannot hold without some event (`_needs_events`), customers without one are dropped
    first: by an inner join on those measures when they cover it, else (needs of counts, sums,
    `not_followed_by`) by a semi-join on the events. When the customers are the traits relation
    itself (the profiles, one row per customer_key), the traits are read from that row, without a
    self-join. The SQL's shape follows the definition's shape and comparisons; values are always bound.
    With `evidence`, each member also shows whether it meets each of `evidence_leaves` (column ev<i>
    for leaf i, null read as not met), from the values its membership was decided on."""
    others = {audience.name: audience, **(others or {})}
    same = relations.customers == relations.traits
    b = _Builder(relations, _epoch(as_of), as_of, key="p" if same else "c")
    plan = _plan(audience, others)
    join = ""
    if plan.measured:
        join = (f" {'join' if plan.inner else 'left join'} ({_measures(b, plan.measured)}) a "
                f"on a.customer_key = {b.key}.customer_key")
    shown, shown_params = "", []
    if evidence:  # the select list comes first in the text: its values are bound first
        later, b.params = b.params, []
        leaves = list(conditions(audience.rule))
        shown = "".join(f", coalesce({b.rule(leaves[i])}, false) as ev{i}" for i in evidence_leaves(audience, others))
        shown_params, b.params = b.params, later
    first = ""
    if plan.candidates:
        reads = " union all ".join(f"select e.customer_key from {relations.events} e where {b.filt(f, 'e')} and "
                                   f"{b.window(w, 'e')}" for _, f, w in plan.needs)
        first = f"{b.key}.customer_key in ({reads}) and "
    pred = _predicate(b, audience, others)
    if same:
        sql = f"select p.customer_key{shown} from {relations.traits} p{join} where {first}{pred}"
    else:
        traits = f" left join {relations.traits} p on p.customer_key = c.customer_key" if b.uses_traits else ""
        sql = f"select c.customer_key{shown} from {relations.customers} c{join}{traits} where {first}{pred}"
    return to_dialect(sql, dialect), shown_params + b.params


def changes_sql(audience: Audience, start: datetime, end: datetime, others: dict[str, Audience] | None = None,
                relations: Relations = Relations(), dialect: str = "duckdb") -> tuple[str, list]:
    """(SQL of (customer_key, change) with change 'entered' or 'exited' between start and end)."""
    before, p0 = membership_sql(audience, start, others, relations)
    after, p1 = membership_sql(audience, end, others, relations)
    sql = (f"select customer_key, 'entered' as change from ({after} except {before}) n"
           f" union all select customer_key, 'exited' from ({before} except {after}) x")
    return to_dialect(sql, dialect), p1 + p0 + p0 + p1


def to_dialect(sql: str, dialect: str) -> str:
    if dialect == "duckdb":
        return sql
    if dialect != "snowflake":
        raise ValueError(f"dialect {dialect!r}: use duckdb or snowflake")
    import sqlglot  # here: importing it costs a DuckDB-only caller (the preview command) about 0.3 s of CPU

    return sqlglot.transpile(sql, read="duckdb", write="snowflake")[0]
