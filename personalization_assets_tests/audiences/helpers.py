"""A real DuckDB holding the events both compilations read."""

from __future__ import annotations

import duckdb
import pandas as pd

from personalization_assets.audiences.equivalence import EVENT_TABLE_COLUMNS
from personalization_assets.audiences.stream import StreamEvent


class DuckQuery:
    def __init__(self, events: list[StreamEvent]):
        self.con = duckdb.connect()
        rows = [(e.customer_key, e.event, e.ts, e.received, *(e.props.get(c) for c in EVENT_TABLE_COLUMNS[4:]))
                for e in events]
        frame = pd.DataFrame(rows, columns=EVENT_TABLE_COLUMNS).astype(
            {"ts": "float64", "received": "float64", "value_minor": "Int64"})
        self.con.register("events_in", frame)
        self.con.execute("create table aud_events as select * from events_in")
        self.con.execute("create table aud_customers as select distinct customer_key from aud_events")

    def __call__(self, sql, params):
        return self.con.execute(sql, list(params)).df()
