"""Run every segment inside the warehouse: new membership, and who entered or exited.

A segment is an audience (`audiences/definitions/*.yaml`) that is not a trigger (no `on_enter`);
its rule is compiled by `sql.py`, the compiler the preview and the equivalence check use.
Nothing is filtered in pandas. Per run:
1. the suppressed customers are materialized once (temporary table);
2. each segment, in `model.ordered` order, inserts its members into a temporary table, minus the
   suppressed (sendable segments) and minus members of the segments it excludes; `since` is
   carried over from the previous membership so it means "member without interruption since";
3. in one transaction: the differences are appended to `segment_changes` and the membership is
   replaced. Re-running the same instant appends nothing (no duplicates on reprocessing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from ..marts.inputs import InputTables, Sql
from .model import Audience, ComputedCond, DefinitionError, EventCond, conditions, load_builtin
from .sql import Relations, predicate_sql
from .suppression import suppressed_sql
from .warehouse import create_views

PROFILES = "marts.customer_profiles"
MEMBERSHIP = "marts.segment_membership"
CHANGES = "marts.segment_changes"
TS = "timestamp with time zone"  # spelled the same on DuckDB and Snowflake
EVENTS = "marts.audience_events"  # the staged events keyed by customer (`warehouse.create_views`)


@dataclass
class SegmentRun:
    sizes: dict[str, int]
    entered: dict[str, int]
    exited: dict[str, int]


def load_segments() -> list[Audience]:
    """The packaged audiences that are segments, in evaluation order: not triggers, and over profile
    traits only, as the segments they replaced were. An audience with event conditions or computed
    traits is kept by its own asset instead; `run_segments` runs one too when it is passed."""
    return [a for a in load_builtin() if not a.is_trigger and not uses_events(a)]


def uses_events(audience: Audience) -> bool:
    return any(isinstance(c, (EventCond, ComputedCond)) for c in conditions(audience.rule))


def member_sql(segment: Audience, as_of: datetime) -> tuple[str, list]:
    """The insert for one segment: the same text on every warehouse for profile traits, values bound."""
    predicate, rule_params = predicate_sql(segment, as_of, Relations(events=EVENTS), key="p")
    sql = f"""insert into seg_next (segment, customer_key, since)
select ?, p.customer_key, coalesce(prev.since, ?)
from {PROFILES} p
left join {MEMBERSHIP} prev on prev.segment = ? and prev.customer_key = p.customer_key
where {predicate}"""
    params = [segment.name, as_of, segment.name, *rule_params]
    if segment.sendable:
        sql += "\n  and not exists (select 1 from seg_suppressed s where s.customer_key = p.customer_key)"
    if segment.exclusions:
        marks = ", ".join("?" for _ in segment.exclusions)
        sql += ("\n  and not exists (select 1 from seg_next x where x.customer_key = p.customer_key"
                f" and x.segment in ({marks}))")
        params += list(segment.exclusions)
    return sql, params


def prepare(conn: Sql) -> None:
    """Tables and schema first: Snowflake commits implicitly on DDL, so none inside the transaction."""
    conn.execute("create schema if not exists marts")
    conn.execute(f"create table if not exists {MEMBERSHIP} (segment varchar, customer_key varchar, since {TS})")
    conn.execute(f"create table if not exists {CHANGES} (run_at {TS}, segment varchar, "
                 "customer_key varchar, change varchar)")


def run_segments(conn: Sql, segments: list[Audience], as_of: datetime,
                 tables: InputTables = InputTables()) -> SegmentRun:
    names = [s.name for s in segments]
    for s in segments:  # an exclusion outside this run would silently exclude nobody
        missing = [x for x in s.exclusions if x not in names[:names.index(s.name)]]
        if missing:
            raise DefinitionError(f"segment {s.name!r}: excludes {missing}, which this run does not "
                                  "evaluate before it; pass the segments in model.ordered order")
    prepare(conn)
    if any(uses_events(s) for s in segments):  # event conditions read the keyed events view
        create_views(conn, conn.dialect, conn.table_exists("core", "identity_map"))
    conn.execute("create or replace temporary table seg_suppressed as " + suppressed_sql(conn, tables))
    conn.execute(f"create or replace temporary table seg_next (segment varchar, customer_key varchar, since {TS})")
    for segment in segments:
        sql, params = member_sql(segment, as_of)
        conn.execute(sql, params)
    conn.execute(f"""create or replace temporary table seg_diff as
select cast(? as {TS}) as run_at, n.segment, n.customer_key, 'entered' as change from seg_next n
where not exists (select 1 from {MEMBERSHIP} m where m.segment = n.segment and m.customer_key = n.customer_key)
union all
select cast(? as {TS}), m.segment, m.customer_key, 'exited' from {MEMBERSHIP} m
where not exists (select 1 from seg_next n where n.segment = m.segment and n.customer_key = m.customer_key)""",
                 [as_of, as_of])
    with conn.transaction():
        conn.execute(f"insert into {CHANGES} (run_at, segment, customer_key, change) "
                     "select run_at, segment, customer_key, change from seg_diff")
        conn.execute(f"delete from {MEMBERSHIP}")
        conn.execute(f"insert into {MEMBERSHIP} (segment, customer_key, since) "
                     "select segment, customer_key, since from seg_next")
    sizes = _counts(conn, "select segment, count(*) as n from seg_next group by segment")
    entered = _counts(conn, "select segment, count(*) as n from seg_diff where change = 'entered' group by segment")
    exited = _counts(conn, "select segment, count(*) as n from seg_diff where change = 'exited' group by segment")
    return SegmentRun(sizes={n: sizes.get(n, 0) for n in names},
                      entered={n: entered.get(n, 0) for n in names},
                      exited={n: exited.get(n, 0) for n in set(names) | set(exited)})


def _counts(conn: Sql, sql: str) -> dict[str, int]:
    frame = conn.query(sql)
    return {str(k): int(v) for k, v in zip(frame["segment"], frame["n"])}


def membership_sample(conn: Sql, limit: int = 1000) -> pd.DataFrame:
    return conn.query(f"select segment, customer_key, since from {MEMBERSHIP} "
                      "order by segment, since desc, customer_key limit ?", [limit])
