"""A micro-batch after a full day's staging writes only the batch's rows: the day is not staged
again (a hand-made change to one of its rows survives), the checks look at the batch alone, and an
event re-sent with a messageId the day already holds is still dropped (first arrival wins). Run
again, the batch changes nothing."""

import time
from datetime import datetime, timezone

import dagster as dg

from personalization_assets import settings
from personalization_assets.assets import event_stream, raw, staging
from personalization_assets.bus import open_bus
from personalization_assets.bus.micro_batch import OFFSET_FROM_TAG, OFFSET_TO_TAG
from personalization_assets.partitions import day_of
from personalization_assets.resources import resources_for

DAY_EVENTS = 3_000
EVENTS_KEY = dg.AssetKey(["staging", "events"])


def _event(mid: str, k: int, sku: str = "S1") -> dict:
    now = datetime.now(timezone.utc).isoformat()
    return {"type": "track", "event": "Product Viewed", "userId": f"u{k % 97}", "messageId": mid,
            "timestamp": now, "properties": {"sku": sku, "price": 9.5, "currency": "EUR"}}


def _micro_batch_assets() -> list:
    checks = [c for c in staging.STAGING_CHECKS if EVENTS_KEY in {k.asset_key for k in c.check_keys}]
    return [raw.events, staging.events, event_stream.collector_quarantine, *checks]


def _metadata(result, key: dg.AssetKey) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_micro_batch_after_a_big_day_writes_only_its_rows_and_dedups_against_the_day(local_env):
    resources = resources_for("local")
    warehouse = resources["warehouse"]
    instance = dg.DagsterInstance.ephemeral()
    day = day_of(datetime.now(timezone.utc))
    # A bus that forgets a messageId at once, as it does after its dedup window (24 h): a re-sent
    # event then reaches raw.events, which must drop it against what it holds.
    bus = open_bus(settings.event_bus_url(), dedup_window_s=0.0)
    try:
        bus.append([_event(f"day-{k}", k) for k in range(DAY_EVENTS)]
                   + [{"type": "track", "event": "Product Viewed", "messageId": "day-anon"}])  # no identity
        assert dg.materialize([raw.events], resources=resources, instance=instance).success
        assert dg.materialize([staging.events], resources=resources, instance=instance, partition_key=day).success
        with warehouse.connect() as conn:
            staged_day = conn.scalar("select count(*) from staging.events")
            conn.execute("update staging.events set sku = 'EDITED' where message_id = 'day-7'")
        assert staged_day == DAY_EVENTS
        head = bus.last_offset()
        bus.close()
        time.sleep(0.05)
        bus = open_bus(settings.event_bus_url(), dedup_window_s=0.0)
        bus.append([_event("batch-0", 0)])  # a new bus prunes on its first append: the day is forgotten
        time.sleep(0.05)
        bus.append([_event(f"batch-{k}", k) for k in range(1, 10)] + [_event("day-3", 3, sku="RESENT")])
        tags = {OFFSET_FROM_TAG: str(head + 1), OFFSET_TO_TAG: str(bus.last_offset())}
        assert bus.last_offset() - head == 11  # the re-sent day-3 is on the bus

        result = dg.materialize(_micro_batch_assets(), resources=resources, instance=instance,
                                partition_key=day, tags=tags)
        assert result.success
        assert _metadata(result, dg.AssetKey(["raw", "events"]))["rows_loaded"] == 10  # day-3 dropped
        staged = _metadata(result, EVENTS_KEY)
        assert staged["rows_in"] == 10 and staged["mode"] == "new events only (micro-batch)"
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert checks["pandera_StagingEvents"].passed
        assert checks["pandera_StagingEvents"].metadata["rows"].value == 10  # the batch, not the day
        assert checks["event_code_mapped"].passed
        with warehouse.connect() as conn:
            assert conn.scalar("select count(*) from staging.events") == staged_day + 10
            assert conn.scalar("select sku from staging.events where message_id = 'day-7'") == "EDITED"
            assert conn.scalar("select sku from staging.events where message_id = 'day-3'") == "S1"
            assert conn.scalar("select count(*) from raw.events where message_id = 'day-3'") == 1
            assert conn.scalar("select status from quarantine.events where record_id = 'day-anon'") == "open"

        again = dg.materialize(_micro_batch_assets(), resources=resources, instance=instance,
                               partition_key=day, tags=tags)
        assert again.success and _metadata(again, EVENTS_KEY)["rows_in"] == 0
        with warehouse.connect() as conn:
            assert conn.scalar("select count(*) from staging.events") == staged_day + 10
            assert conn.scalar("select count(*) from raw.events") == DAY_EVENTS + 1 + 10
    finally:
        bus.close()
