"""Event stream: micro-batch runs over the event bus, and the collector's quarantine in the warehouse.

The sensor launches `event_micro_batch` (raw.events -> staging.events, plus the quarantined events)
when new events wait on the bus, with a run key from the offset range.
"""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd

from ..bus import open_quarantine_bus
from ..bus.micro_batch import OFFSET_FROM_TAG, OFFSET_TO_TAG, Offsets, plan_micro_batch
from ..partitions import day_of, range_tags
from ..resources.sources import EventBusResource
from ..resources.warehouse import Warehouse
from .common import (
    WAREHOUSE_POOL, frame_metadata, merge_quarantine, prepare_cursors, prepare_quarantine,
    read_cursor, utc_now, write_cursor,
)

QUARANTINE_SOURCE = "collector"


def _record_id(record) -> str:
    payload = record.event.get("payload")
    mid = payload.get("messageId") if isinstance(payload, dict) else None
    return str(mid or record.message_id)


def quarantine_rows(records) -> pd.DataFrame:
    """Collector quarantine records as `quarantine.collector` rows (record_id = event messageId)."""
    return pd.DataFrame(
        [{"record_id": _record_id(r), "raw_payload": json.dumps(r.event.get("payload"), default=str),
          "rule": str(r.event.get("rule", "unknown")), "message": str(r.event.get("message", ""))}
         for r in records],
        columns=["record_id", "raw_payload", "rule", "message"],
    )


@dg.asset(key=["quarantine", QUARANTINE_SOURCE], group_name="ingestion", pool=WAREHOUSE_POOL,
          kinds={"sqlite", "duckdb"}, tags={"pii": "true"})
def collector_quarantine(event_bus: EventBusResource, warehouse: Warehouse) -> dg.MaterializeResult:
    """Events the collector refused at the door (bad shape, too large, absurd clocks), with the rule
    and message that refused them, so nothing a client sent is silently lost.

    manual: loaded by `event_stream_sensor`'s micro-batch runs, beside raw.events."""
    with warehouse.connect() as conn:
        after = int((read_cursor(conn, "collector_quarantine") or {}).get("offset", 0))
    bus = open_quarantine_bus(event_bus.url)
    try:
        records = []
        while batch := bus.read(records[-1].offset if records else after, limit=5000):
            records.extend(batch)
    finally:
        bus.close()
    rows = quarantine_rows(records)
    new_offset = records[-1].offset if records else after
    added = 0
    if records:  # else nothing to write (most micro-batches): the warehouse is not opened again
        with warehouse.connect() as conn:
            prepare_cursors(conn)
            prepare_quarantine(conn, QUARANTINE_SOURCE)
            with conn.transaction():
                added = merge_quarantine(conn, QUARANTINE_SOURCE, rows)
                write_cursor(conn, "collector_quarantine", {"offset": int(new_offset)})
    return dg.MaterializeResult(metadata=frame_metadata(
        rows, rows_in=len(records), quarantined=added,
        quarantined_by_rule=rows["rule"].value_counts().to_dict(),
        offsets={"from": after, "to": int(new_offset)}))


event_micro_batch = dg.define_asset_job(
    "event_micro_batch",
    selection=dg.AssetSelection.assets(["raw", "events"], ["staging", "events"], ["quarantine", QUARANTINE_SOURCE]),
    executor_def=dg.in_process_executor,  # one process per run: ~2 s less latency than multiprocess
    description="Loads the events waiting on the bus into raw.events and staging.events.",
)

# Runs that have not begun executing: they will still read everything that is waiting.
_NOT_YET_STARTED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]


@dg.sensor(job=event_micro_batch, minimum_interval_seconds=1,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Launches one micro-batch run when new events wait on the bus.")
def event_stream_sensor(context: dg.SensorEvaluationContext, event_bus: EventBusResource):
    seen = Offsets.from_cursor(context.cursor)
    bus, quarantine = event_bus.open(), open_quarantine_bus(event_bus.url)
    try:
        head = Offsets(bus.last_offset(), quarantine.last_offset())
        first = bus.read(after_offset=seen.events, limit=1) if head.events > seen.events else []
    finally:
        bus.close()
        quarantine.close()
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=event_micro_batch.name, statuses=_NOT_YET_STARTED), limit=1)
    decision = plan_micro_batch(seen, head, runs[0].run_id if runs else None)
    if decision.run_key is None:
        return dg.SkipReason(decision.reason)
    # staging.events is partitioned by arrival day: stage every day from the first waiting event's.
    first_day, today = day_of(first[0].received_at if first else utc_now()), day_of(utc_now())
    tags = {OFFSET_FROM_TAG: str(seen.events + 1), OFFSET_TO_TAG: str(head.events)}
    request = (dg.RunRequest(run_key=decision.run_key, partition_key=today, tags=tags) if first_day >= today
               else dg.RunRequest(run_key=decision.run_key, tags={**tags, **range_tags(first_day, today)}))
    return dg.SensorResult(run_requests=[request], cursor=decision.cursor.to_cursor())


defs = dg.Definitions(assets=[collector_quarantine], jobs=[event_micro_batch], sensors=[event_stream_sensor])
