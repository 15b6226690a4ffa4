"""Compile an audience to SQL: membership at an instant, and who entered or exited between two.

Values (event names, filter values, thresholds, instants) are always bind parameters (`?`);
the only identifiers interpolated are whitelisted columns (`model.EVENT_COLUMNS`, profile
`TRAITS`) and relation names chosen by the caller. The text is written in DuckDB's dialect
and transpiled by sqlglot for Snowflake, so both run the same plan of conditions.

Relations: `customers` (customer_key), `events` (customer_key, event, ts = epoch seconds,
and the event columns), `traits` (the profile, one row per customer_key), `uplift` (issue 21:
`marts.uplift_scores`, whose `uplift_score` and `uplift_rank` a trait condition may use, so an
audience can target the top-k persuadables: `{trait: uplift_rank, op: "<=", value: 1000}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlglot

from .model import (Audience, ComputedCond, ComputedTrait, DefinitionError, EventCond, EventFilter,
                    Group, Rule, TraitCond, Window)

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


UPLIFT_TRAITS = {"uplift_score": "number", "uplift_rank": "number"}  # batch-only, as every profile trait


class _Builder:
    def __init__(self, rel: Relations, at: float, as_of: datetime, key: str = "c"):
        self.rel, self.at, self.as_of, self.params, self.key = rel, at, as_of, [], key
        self.uses_traits = False

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
        agg = f"coalesce(sum(e.{cond.of}), 0)" if cond.measure == "sum" else "count(*)"
        sql = f"(select {agg} {self.matching(cond.match, cond.window)}"
        if cond.not_followed_by is not None:
            sql += (f" and not exists (select 1 from {self.rel.events} f where f.customer_key = e.customer_key"
                    f" and {self.filt(cond.not_followed_by, 'f')} and f.ts > e.ts and f.ts <= {self.bind(self.at)}")
            if cond.follow_within is not None:
                sql += f" and f.ts < e.ts + {self.bind(cond.follow_within)}"
            sql += ")"
        return f"{sql}) {cond.op} {self.bind(cond.value)}"

    def computed(self, t: ComputedTrait) -> str:
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
            return f"{self.computed(rule.trait)} {rule.op} {self.bind(rule.value)}"
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


def membership_sql(audience: Audience, as_of: datetime, others: dict[str, Audience] | None = None,
                   relations: Relations = Relations(), dialect: str = "duckdb") -> tuple[str, list]:
    """(SQL listing the customer_key of every member at `as_of`, its bind parameters)."""
    others = {audience.name: audience, **(others or {})}
    b = _Builder(relations, _epoch(as_of), as_of)
    pred = _predicate(b, audience, others)
    join = (f" left join {relations.traits} p on p.customer_key = c.customer_key" if b.uses_traits else "")
    sql = f"select c.customer_key from {relations.customers} c{join} where {pred}"
    return to_dialect(sql, dialect), b.params


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
    return sqlglot.transpile(sql, read="duckdb", write="snowflake")[0]
