"""Metrics the warehouse holds rather than run metadata: identity clusters, sync outcomes, and
unsubscribes waiting to reach the destinations. Every table is optional (absent before its first
run, or before the activation layer exists); an absent table yields no samples, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import pandas as pd

from .metrics import CLUSTER_SIZE_BUCKETS
from .snapshot import Samples


class Sql(Protocol):
    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame: ...
    def table_exists(self, schema: str, table: str) -> bool: ...


@dataclass(frozen=True)
class WarehouseTables:
    """Where the activation layer records what it did (the contract in monitoring/README.md)."""

    crosswalk: tuple[str, str] = ("core", "customer_crosswalk")  # record_id, customer_key
    sync_results: tuple[str, str] = ("activation", "sync_results")  # destination, outcome, rows
    propagation: tuple[str, str] = ("activation", "suppression_propagation")
    # ^ email, destination, requested_at (UTC), propagated_at (NULL while pending)


def cluster_histogram(conn: Sql, table: tuple[str, str]) -> tuple[list[tuple[str, float]], float, float] | None:
    """Cumulative buckets (le, count), sum and count of records per golden customer."""
    if not conn.table_exists(*table):
        return None
    sizes = conn.query(
        f"select n, count(*) as customers from (select customer_key, count(*) as n "
        f"from {table[0]}.{table[1]} group by customer_key) s group by n")
    ns, counts = sizes["n"].astype(float).tolist(), sizes["customers"].astype(float).tolist()
    buckets = [(str(b), sum(c for n, c in zip(ns, counts) if n <= b)) for b in CLUSTER_SIZE_BUCKETS]
    buckets.append(("+Inf", sum(counts)))
    return buckets, sum(n * c for n, c in zip(ns, counts)), sum(counts)


def warehouse_samples(conn: Sql, now: float, tables: WarehouseTables = WarehouseTables(),
                      out: Samples | None = None) -> Samples:
    out = out or Samples()
    if conn.table_exists(*tables.sync_results):
        s, t = tables.sync_results
        frame = conn.query(f"select destination, outcome, sum(rows) as n from {s}.{t} group by destination, outcome")
        for row in frame.itertuples(index=False):
            out.set("sync_rows_total", float(row.n or 0), destination=str(row.destination), outcome=str(row.outcome))
    if conn.table_exists(*tables.propagation):
        s, t = tables.propagation
        oldest = conn.query(f"select min(requested_at) as oldest from {s}.{t} where propagated_at is null")["oldest"].iloc[0]
        age = 0.0
        if oldest is not None and not pd.isna(oldest):
            stamp = pd.Timestamp(oldest)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
            age = max(0.0, now - stamp.timestamp())
        out.set("unsubscribe_propagation_pending_oldest_seconds", age)
    return out
