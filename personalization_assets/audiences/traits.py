"""Computed traits in the warehouse: one column per trait the audience definitions declare, kept
incrementally from the arrival-day partitions of `staging.events`.

Folding a day aggregates only that day's events into `marts.computed_trait_state`: per trait, per
identity as the event carried it (user_id, anonymous_id), per event-time bucket (and per value, for
`last` and `most_frequent`), a count, a sum and the latest time. Folding the same day again replaces
what it added, so a re-staged day or a new micro-batch of today is folded by re-aggregating that day
alone, and folding days one by one gives the same state as folding them all at once.

`snapshot` turns the state into `marts.computed_traits` (one row per customer) at an instant `as_of`
on a bucket edge. Buckets are half-open like the language's windows, (k-1)B < ts <= kB, and B divides
every window edge, so a window at `as_of` covers whole buckets: the values are exactly what the SQL
and stream compilations compute at that instant. Identities are resolved to customers only here,
through `core.identity_map` as it is now, so an identity merge needs no refold.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime, timezone
from math import gcd

from ..marts.inputs import Sql
from .model import EVENT_COLUMNS, Audience, ComputedTrait, DefinitionError
from .sql import to_dialect

STATE = "marts.computed_trait_state"
SNAPSHOT = "marts.computed_traits"
RESERVED = {"customer_key", "as_of"}
MAX_BUCKET = 3600  # the snapshot is at most an hour behind the data
STATE_DDL = (f"create table if not exists {STATE} (day date, user_id varchar, anonymous_id varchar, "
             "trait varchar, bucket double, value varchar, n bigint, total double, last_ts double)")


def declared_traits(audiences: list[Audience]) -> dict[str, ComputedTrait]:
    """Every computed trait declared under `traits:`, by name. One name is one trait: two audiences
    may declare the same name only with the same definition (it is one column)."""
    out: dict[str, ComputedTrait] = {}
    where: dict[str, str] = {}
    for a in audiences:
        for name, trait in a.traits.items():
            if name in RESERVED:
                raise DefinitionError(f"audience {a.name!r}: trait name {name!r} is reserved; rename it")
            if name in out and out[name] != trait:
                raise DefinitionError(f"audience {a.name!r}: trait {name!r} differs from the one "
                                      f"{where[name]!r} declares; rename one of them")
            out.setdefault(name, trait)
            where.setdefault(name, a.name)
    return dict(sorted(out.items()))


def bucket_seconds(traits: dict[str, ComputedTrait]) -> int:
    """The bucket width: the greatest divisor of every window edge and of MAX_BUCKET (whole seconds)."""
    width = MAX_BUCKET
    for t in traits.values():
        for edge in (t.window.end, t.window.start):
            if edge:
                if edge != int(edge):
                    raise DefinitionError(f"trait {t.name!r}: window edges must be whole seconds")
                width = gcd(width, int(edge))
    return width


def signature(traits: dict[str, ComputedTrait], bucket: int) -> str:
    """What the state was folded for: another set of traits or buckets needs a full rebuild."""
    text = json.dumps([bucket, {n: asdict(t) for n, t in traits.items()}], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def aligned(as_of: datetime, bucket: int) -> datetime:
    """The bucket edge at or before `as_of`: the instant a snapshot describes."""
    epoch = as_of.timestamp()
    return datetime.fromtimestamp(epoch - epoch % bucket, timezone.utc)


def _fold_select(trait: ComputedTrait, bucket: int, params: list) -> str:
    """The state rows of one trait for the events of the days being folded (`?` range last)."""
    params.append(trait.name)  # the select list's one parameter comes first
    filters = [f"e.event in ({', '.join('?' for _ in trait.match.events)})"]
    params += list(trait.match.events)
    for col, vals in trait.match.where:
        filters.append(f"e.{col} in ({', '.join('?' for _ in vals)})")
        params += list(vals)
    value, total, last = "cast(null as varchar)", "cast(null as double)", "cast(null as double)"
    if trait.kind == "sum":
        total = f"cast(sum(e.{trait.of}) as double)"
    elif trait.kind in ("last", "most_frequent"):
        value = f"cast(e.{trait.of} as varchar)"
        filters.append(f"e.{trait.of} is not null")
        if trait.kind == "last":
            last = "max(epoch(e.timestamp))"
    return (f"select cast(e.received_at as date) as day, e.user_id, e.anonymous_id, "
            f"? as trait, ceil(epoch(e.timestamp) / {bucket}) * {bucket} as bucket, "
            f"{value} as value, count(*) as n, {total} as total, {last} as last_ts "
            f"from staging.events e where {' and '.join(filters)} "
            "and e.received_at >= ? and e.received_at < ? group by all")


def fold(conn: Sql, traits: dict[str, ComputedTrait], bucket: int, start: datetime | None = None,
         end: datetime | None = None) -> int:
    """Replace the state of the events received in [start, end) (whole arrival days; None: all of
    `staging.events`, a full rebuild). Call inside a transaction. Returns state rows written."""
    full = start is None
    lo = start or datetime(1970, 1, 1, tzinfo=timezone.utc)
    hi = end or datetime(9999, 1, 1, tzinfo=timezone.utc)
    if full:
        conn.execute(f"delete from {STATE}")
    else:
        conn.execute(f"delete from {STATE} where day >= cast(? as date) and day < cast(? as date)", [lo, hi])
    if not traits:
        return 0
    params: list = []
    parts = []
    for trait in traits.values():
        parts.append(_fold_select(trait, bucket, params))
        params += [lo, hi]
    before = _count(conn)
    conn.execute(to_dialect(f"insert into {STATE} " + " union all ".join(parts), conn.dialect), params)
    return _count(conn) - before


def _count(conn: Sql) -> int:
    return int(conn.query(f"select count(*) as n from {STATE}")["n"].iloc[0])


def _native(trait: ComputedTrait, col: str = "s.value") -> str:
    return f"cast({col} as double)" if EVENT_COLUMNS.get(trait.of or "") == "number" else col


def _trait_select(trait: ComputedTrait, at: float, params: list) -> str:
    where = ["s.trait = ?", "s.bucket <= ?"]
    params += [trait.name, at - trait.window.end]
    if trait.window.start is not None:
        where.append("s.bucket > ?")
        params.append(at - trait.window.start)
    cond = " and ".join(where)
    if trait.kind == "count":
        return f"select customer_key, cast(sum(s.n) as bigint) as v from resolved s where {cond} group by 1"
    if trait.kind == "sum":
        return f"select customer_key, sum(s.total) as v from resolved s where {cond} group by 1"
    if trait.kind == "last":  # the latest event's value; ties at one instant: the greatest value
        return (f"select customer_key, v from (select customer_key, {_native(trait)} as v, row_number() over "
                f"(partition by customer_key order by s.last_ts desc, {_native(trait)} desc) as r "
                f"from resolved s where {cond}) x where r = 1")
    return (f"select customer_key, v from (select customer_key, v, row_number() over (partition by customer_key "
            f"order by n desc, v asc) as r from (select customer_key, {_native(trait)} as v, sum(s.n) as n "
            f"from resolved s where {cond} group by 1, 2) g) x where r = 1")


def snapshot_sql(traits: dict[str, ComputedTrait], as_of: datetime, has_identity: bool) -> tuple[str, list]:
    """(SQL of one row per customer: customer_key, as_of, one column per trait; its parameters).
    `as_of` must be on a bucket edge (`aligned`) for the values to be exact."""
    key = ("coalesce(mu.customer_key, ma.customer_key, st.user_id, 'anon:' || st.anonymous_id)" if has_identity
           else "coalesce(st.user_id, 'anon:' || st.anonymous_id)")
    joins = ("left join core.identity_map mu on mu.identity_type = 'user_id' and mu.identity = st.user_id "
             "left join core.identity_map ma on ma.identity_type = 'anonymous_id' and ma.identity = st.anonymous_id"
             if has_identity else "")
    at = as_of.timestamp()
    params: list = []
    ctes = [f"resolved as (select {key} as customer_key, st.* from {STATE} st {joins})",
            "keys as (select distinct customer_key from resolved)"]
    cols, tail = [], []
    for i, (name, trait) in enumerate(traits.items()):
        ctes.append(f"t{i} as ({_trait_select(trait, at, params)})")
        cols.append(f"coalesce(t{i}.v, 0) as {name}" if trait.kind in ("count", "sum") else f"t{i}.v as {name}")
        tail.append(f"left join t{i} on t{i}.customer_key = k.customer_key")
    params.append(as_of)
    select = ", ".join(["k.customer_key", "cast(? as timestamptz) as as_of", *cols])
    sql = f"with {', '.join(ctes)} select {select} from keys k {' '.join(tail)}"
    return sql, params  # in text order: the CTEs' parameters, then as_of in the select list


def snapshot(conn: Sql, traits: dict[str, ComputedTrait], as_of: datetime, has_identity: bool) -> None:
    """(Re)create `marts.computed_traits` from the state, at `as_of` (a bucket edge)."""
    sql, params = snapshot_sql(traits, as_of, has_identity)
    conn.execute(to_dialect(f"create or replace table {SNAPSHOT} as {sql}", conn.dialect), params)
