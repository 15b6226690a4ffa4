"""Daily partitions of the event and order streams, by arrival day (UTC).

A partition holds what *arrived* on that day: events by the bus's `received_at`, orders by the
`loaded_at` of their latest version in `raw.shop_orders`. Arrival days suit a stream: a micro-batch
only ever touches today's partition (yesterday's too just after midnight), late events never
reopen old days, and backfilling a day re-stages exactly the raw rows that arrived on it, so a
rule fix can be applied to history one day or one range at a time (in a single run).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg

FIRST_DAY = "2024-01-01"

ARRIVAL_DAYS = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1)
"""Daily, UTC, up to and including today (`end_offset=1`: today's partition fills as events arrive)."""

STREAM_PARTITIONED = dg.AssetSelection.assets(["staging", "events"], ["staging", "orders"], ["staging", "order_lines"])
"""The assets partitioned by ARRIVAL_DAYS. Their days before the data began stay empty for good, so
the automation of their unpartitioned children looks only at the newest day (`assets/common.py`)."""

SINGLE_RUN = dg.BackfillPolicy.single_run()
"""A backfill of many days runs as one run: staging is vectorized, per-day runs would only add overhead."""


def day_of(moment: datetime) -> str:
    """The partition key of a moment (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d")


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover the partitions `first`..`last` (inclusive)."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def recent_days_tags(now: datetime | None = None) -> dict[str, str]:
    """Yesterday and today: what a scheduled refresh re-stages (covers runs just after midnight)."""
    now = now or datetime.now(timezone.utc)
    return range_tags(day_of(now - timedelta(days=1)), day_of(now))
