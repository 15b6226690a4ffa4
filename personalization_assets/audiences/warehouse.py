"""The equivalence check on the warehouse: a view of staged events keyed by customer, read by both
compilations, over a window of history that ends at the last arrival.

The view resolves each event to its customer through `core.identity_map` as it is now, for both
sides alike, so an identity merge cannot make them differ here (it can differ from what the live
engine saw at the time; that is the live trigger's own backtest).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..marts.inputs import Sql
from .model import EVENT_COLUMNS, Audience
from .sql import Relations, resolved_key, to_dialect
from .stream import StreamUnsupported, check_streamable

if TYPE_CHECKING:
    from .equivalence import Report

EVENTS_VIEW = "marts.audience_events"
CUSTOMERS_VIEW = "marts.audience_customers"
RELATIONS = Relations(customers=CUSTOMERS_VIEW, events=EVENTS_VIEW)


def create_views(conn: Sql, dialect: str, has_identity: bool) -> None:
    key, joins = resolved_key("e", "core.identity_map" if has_identity else None)
    cols = ", ".join(f"e.{c}" for c in EVENT_COLUMNS)
    conn.execute("create schema if not exists marts")
    conn.execute(to_dialect(f"create or replace view {EVENTS_VIEW} as select {key} as customer_key, e.event, "
                            f"epoch(e.timestamp) as ts, epoch(e.received_at) as received, {cols} "
                            f"from staging.events e{joins}", dialect))
    conn.execute(f"create or replace view {CUSTOMERS_VIEW} as select distinct customer_key from {EVENTS_VIEW}")


def split_streamable(audiences: list[Audience]) -> tuple[list[Audience], dict[str, str]]:
    """(audiences the stream can run, {name: why not} for the others) — exclusions follow along."""
    refused: dict[str, str] = {}
    for a in audiences:
        try:
            check_streamable(a)
        except StreamUnsupported as exc:
            refused[a.name] = str(exc)
    changed = True
    while changed:  # an audience excluding a refused one cannot run in the stream either
        changed = False
        for a in audiences:
            bad = [x for x in a.exclusions if x in refused]
            if a.name not in refused and bad:
                refused[a.name] = f"audience {a.name!r}: excludes {bad[0]!r}, which cannot run in the stream"
                changed = True
    return [a for a in audiences if a.name not in refused], refused


def run(conn: Sql, dialect: str, has_identity: bool, audiences: list[Audience], days: float,
        max_instants: int, arrival: str = "received") -> tuple[Report, dict[str, str], tuple[float, float]]:
    """Replay the last `days` of staged history through both compilations and compare (`arrival`:
    see equivalence.py)."""
    import pandas as pd  # here: the preview command uses this module's views without pandas (~0.6 s)

    from .equivalence import Report, compare, events_from_frame, interesting_instants

    create_views(conn, dialect, has_identity)
    runnable, refused = split_streamable(audiences)
    last = conn.query(f"select max(received) as t from {EVENTS_VIEW}")["t"].iloc[0]  # as of the last arrival
    if last is None or pd.isna(last) or not runnable:
        return Report(0, 0, pd.DataFrame(columns=["instant", "audience", "customer_key", "in_sql",
                                                  "in_stream", "reason"])), refused, (0.0, 0.0)
    end = float(last)
    start = end - days * 86400
    # The SQL sees the same window of history as the stream, so nothing older decides either side.
    conn.execute(f"create or replace temporary table audience_window as select * from {EVENTS_VIEW} "
                 "where ts >= ?", [start])
    conn.execute("create or replace temporary table audience_window_customers as "
                 "select distinct customer_key from audience_window")
    events = events_from_frame(conn.query("select * from audience_window order by received, ts"))
    instants = interesting_instants(events, runnable, start, end, max_instants)
    windowed = Relations(customers="audience_window_customers", events="audience_window")
    return compare(conn.query, runnable, events, instants, windowed, arrival=arrival), refused, (start, end)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)
