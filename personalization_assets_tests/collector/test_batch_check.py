"""The blocking Pandera check on staging.events validates what its run wrote: a micro-batch's new
events only (its cost follows the batch, not the day), a full run its whole days."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from personalization_assets.assets import raw, staging
from personalization_assets.bus import open_bus
from personalization_assets.partitions import day_of
from personalization_assets.resources import resources_for
from personalization_assets.resources.sources import EventBusResource

CHECK = next(c for c in staging.STAGING_CHECKS
             if any(k.name == "pandera_StagingEvents" for k in c.check_keys))


def _track(i: int) -> dict:
    return {"type": "track", "event": "Product Viewed", "userId": f"u{i}", "messageId": f"m-{i}",
            "timestamp": datetime.now(timezone.utc).isoformat(), "properties": {"sku": f"S{i}"}}


def _check(result: dg.ExecuteInProcessResult):
    (evaluation,) = [e.asset_check_evaluation_data for e in result.all_events
                     if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    return evaluation.passed, evaluation.metadata["rows"].value


def test_a_micro_batch_checks_its_own_events_and_a_full_run_the_day(local_env, closing):
    url = f"sqlite:///{local_env}/events.db"
    bus = closing(open_bus(url))
    resources = {**resources_for("local"), "event_bus": EventBusResource(url=url)}
    day = day_of(datetime.now(timezone.utc))

    def run(**tags):
        return dg.materialize([raw.events, staging.events, CHECK], resources=resources, partition_key=day,
                              tags=tags, raise_on_error=False)

    bus.append([_track(i) for i in range(20)])
    first = run(**{"bus/offset_from": "1", "bus/offset_to": str(bus.last_offset())})
    assert first.success and _check(first) == (True, 20)
    # A row already in the day breaks the model (written by hand here): a micro-batch that did not
    # write it is not blamed for it, and does not pay for reading the day.
    with resources["warehouse"].connect() as conn:
        conn.execute("update staging.events set type = 'not-a-type' where message_id = 'm-0'")
    bus.append([_track(i) for i in range(20, 23)])
    batch = run(**{"bus/offset_from": "21", "bus/offset_to": str(bus.last_offset())})
    assert batch.success and _check(batch) == (True, 3)
    nothing_new = run(**{"bus/offset_from": "24", "bus/offset_to": "23"})
    assert _check(nothing_new) == (True, 0)
    # A full run re-stages and checks the whole day (23 events, all valid again once re-staged).
    full = run()
    assert full.success and _check(full) == (True, 23)


def test_a_check_only_run_without_a_partition_checks_the_whole_table(local_env, closing):
    url = f"sqlite:///{local_env}/events.db"
    bus = closing(open_bus(url))
    resources = {**resources_for("local"), "event_bus": EventBusResource(url=url)}
    bus.append([_track(i) for i in range(4)])
    assert dg.materialize([raw.events, staging.events], resources=resources,
                          partition_key=day_of(datetime.now(timezone.utc))).success
    alone = dg.materialize([raw.events, staging.events, CHECK], resources=resources,
                           selection=dg.AssetSelection.checks(CHECK))
    assert alone.success and _check(alone) == (True, 4)
