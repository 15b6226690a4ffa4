"""Daily partitions of the event and order streams, by arrival day (UTC).

A partition holds what *arrived* on that day: events by the bus's `received_at`, orders by the
`loaded_at` of their latest version in `raw.shop_orders`. Arrival days suit a stream: a micro-batch
only ever touches today's partition (yesterday's too just after midnight), late events never
reopen old days, and backfilling a day re-stages exactly the raw rows that arrived on it, so a
rule fix can be applied to history one day or one range at a time (see `backfill_policy`).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import dagster as dg

from . import settings

FIRST_DAY = "2024-01-01"

ARRIVAL_DAYS = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1)
"""Daily, UTC, up to and including today (`end_offset=1`: today's partition fills as events arrive)."""

STREAM_PARTITIONED = dg.AssetSelection.assets(["staging", "events"], ["staging", "orders"], ["staging", "order_lines"])
"""The assets partitioned by ARRIVAL_DAYS. Their days before the data began stay empty for good, so
the automation of their unpartitioned children looks only at the newest day (`assets/common.py`)."""



def backfill_policy() -> dg.BackfillPolicy:
    """How a backfill of many days is split into runs (read when the definitions load).

    Locally (embedded DuckDB, one writer) one run covers the whole range: staging is vectorized and
    per-day runs would only queue behind each other. In prod (`DAGSTER_DEPLOYMENT=prod`: Snowflake,
    a run queue, a container per run) the days fan out as separate runs of
    `PERSONALIZATION_BACKFILL_DAYS_PER_RUN` days each (default 1), which the queue's per-partition
    and backfill limits spread over the run workers (deploy/dagster.prod.yaml). Setting it to 0
    asks for one run anywhere."""
    raw = os.environ.get("PERSONALIZATION_BACKFILL_DAYS_PER_RUN", "").strip()
    try:
        days = int(raw) if raw else (1 if settings.deployment() == "prod" else 0)
    except ValueError:
        raise ValueError(f"PERSONALIZATION_BACKFILL_DAYS_PER_RUN must be a whole number of days, not {raw!r}") from None
    if days < 0:
        raise ValueError(f"PERSONALIZATION_BACKFILL_DAYS_PER_RUN must be 0 (one run) or more, not {days}")
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=days) if days else dg.BackfillPolicy.single_run()


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
