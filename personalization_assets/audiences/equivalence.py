"""The equivalence check: replay history through the stream compilation, evaluate the SQL
compilation at the same instants, and list every person in one and not the other, with a reason.

Reasons: `late_event` (one of the person's events reached us later than the declared lateness,
so the stream had already decided that instant), otherwise `unexplained` (a real defect in one
of the compilers). Both sides read the same keyed events, so identity merges and profile-trait
freshness cannot differ here; the stream refuses batch-only traits outright.

Arrival: events are replayed in the order they were received (`received`), which is what the
stream saw live. A history loaded in bulk (a backfill, the demo's seeded bus) carries the load's
time as every event's arrival, which makes all but its last minutes late; `event_time` replays it
as if each event had arrived at its own time, so every instant is decided on time and compared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from .model import Audience, EVENT_COLUMNS
from .sql import Relations, membership_sql
from .stream import AudienceStream, Change, StreamEvent, members_at

Query = Callable[[str, Sequence[Any]], pd.DataFrame]
COLUMNS = ["instant", "audience", "customer_key", "in_sql", "in_stream", "reason"]
EVENT_TABLE_COLUMNS = ["customer_key", "event", "ts", "received", *EVENT_COLUMNS]


@dataclass
class Report:
    instants: int
    compared: int  # (instant, audience) pairs
    disagreements: pd.DataFrame

    @property
    def unexplained(self) -> int:
        return int((self.disagreements["reason"] == "unexplained").sum())


ARRIVALS = ("received", "event_time")


def arrived(events: Iterable[StreamEvent], arrival: str = "received") -> list[StreamEvent]:
    """The events as the replay feeds them: as received, or each at its own time (a backfill)."""
    if arrival not in ARRIVALS:
        raise ValueError(f"arrival {arrival!r}: use one of {ARRIVALS}")
    if arrival == "received":
        return list(events)
    return [replace(e, received=e.ts) for e in events]


def replay(audiences: Iterable[Audience], events: Iterable[StreamEvent], end: float,
           lateness: float | None = None) -> list[Change]:
    """Every entry/exit the stream would have decided, feeding events in receive order."""
    stream = AudienceStream(audiences, lateness)
    out: list[Change] = []
    for ev in sorted(events, key=lambda e: (e.received, e.ts)):
        out += stream.advance(ev.received)
        out += stream.process(ev)
    out += stream.advance(end + stream.lateness + 1e-3)  # decide every instant up to `end`
    return out


def events_from_frame(frame: pd.DataFrame) -> list[StreamEvent]:
    """Rows shaped like EVENT_TABLE_COLUMNS -> stream events (nulls dropped from props)."""
    out = []
    cols = [c for c in EVENT_COLUMNS if c in frame.columns]
    for row in frame.itertuples(index=False):
        r = row._asdict()
        props = {c: r[c] for c in cols if r[c] is not None and not (isinstance(r[c], float) and pd.isna(r[c]))}
        out.append(StreamEvent(float(r["ts"]), str(r["customer_key"]), str(r["event"]),
                               float(r["received"]), props))
    return out


def compare(query: Query, audiences: list[Audience], events: list[StreamEvent], instants: list[float],
            relations: Relations = Relations(), lateness: float | None = None, arrival: str = "received") -> Report:
    """Disagreements between SQL (over `relations`, holding the same events) and the stream."""
    events = arrived(events, arrival)
    changes = replay(audiences, events, max(instants), lateness)
    limit = AudienceStream(audiences, lateness).lateness
    late_at: dict[str, float] = {}  # earliest timestamp of a person's too-late event
    for e in events:
        if e.received - e.ts > limit:
            late_at[e.customer_key] = min(late_at.get(e.customer_key, e.ts), e.ts)
    first_seen: dict[str, float] = {}  # a person exists for the stream from their first event
    for e in events:
        first_seen[e.customer_key] = min(first_seen.get(e.customer_key, e.ts), e.ts)
    others = {a.name: a for a in audiences}
    rows = []
    for t in instants:
        at = sql_instant(t)
        t = at.timestamp()  # both sides at the very same instant
        in_stream = members_at(changes, t)
        known = {k for k, first in first_seen.items() if first <= t}
        for a in audiences:
            sql, params = membership_sql(a, at, others, relations)
            in_sql = {str(k) for k in query(sql, params)["customer_key"]} & known
            for key in in_sql ^ in_stream.get(a.name, set()):
                late = key in late_at and late_at[key] <= t
                rows.append((t, a.name, key, key in in_sql, key not in in_sql,
                             "late_event" if late else "unexplained"))
    return Report(len(instants), len(instants) * len(audiences), pd.DataFrame(rows, columns=COLUMNS))


def sql_instant(t: float) -> datetime:
    """The instant t as the SQL compilation takes it (a datetime: whole microseconds), at or just
    after t. Event times carry more digits than that, and a change at t must not be compared at
    a microsecond before it."""
    at = datetime.fromtimestamp(t, timezone.utc)
    return at + timedelta(microseconds=1) if at.timestamp() < t else at


def interesting_instants(events: list[StreamEvent], audiences: list[Audience], start: float, end: float,
                         limit: int = 200) -> list[float]:
    """Instants where membership can change (event times plus window offsets), within [start, end],
    thinned evenly to `limit`: checking there is checking everywhere, as membership is constant
    between them."""
    offsets = AudienceStream(audiences).offsets
    points = sorted({e.ts + o for e in events for o in offsets if start <= e.ts + o <= end} | {end})
    if len(points) <= limit:
        return points
    step = len(points) / limit
    return [points[int(i * step)] for i in range(limit)]
