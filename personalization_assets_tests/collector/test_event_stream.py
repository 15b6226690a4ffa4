"""The micro-batch sensor over the bus and the collector quarantine asset."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from personalization_assets.partitions import day_of

from personalization_assets.assets import event_stream, raw, staging
from personalization_assets.bus import open_bus, open_quarantine_bus
from personalization_assets.bus.micro_batch import Offsets, plan_micro_batch
from personalization_assets.collector.intake import split
from personalization_assets.resources import resources_for
from personalization_assets.resources.sources import EventBusResource


def _track(i: int) -> dict:
    return {"type": "track", "event": "Product Viewed", "userId": f"u{i}", "messageId": f"m-{i}",
            "timestamp": "2026-11-28T10:00:00Z", "properties": {"sku": f"SKU-{i}", "price": 10}}


def test_plan_runs_once_per_batch_and_never_beside_a_run_still_waiting_to_start():
    d = plan_micro_batch(Offsets(10, 0), Offsets(25, 2), None)
    assert d.run_key == "events:11-25|quarantine:1-2" and d.cursor == Offsets(25, 2)
    assert plan_micro_batch(Offsets(25, 2), Offsets(25, 2), None).run_key is None
    busy = plan_micro_batch(Offsets(25, 2), Offsets(30, 2), "run-1")
    assert busy.run_key is None and busy.cursor == Offsets(25, 2) and "run-1" in busy.reason
    assert Offsets.from_cursor(Offsets(7, 3).to_cursor()) == Offsets(7, 3)


def test_sensor_requests_one_run_per_offset_range(tmp_path, closing):
    url = f"sqlite:///{tmp_path}/events.db"
    bus = closing(open_bus(url))
    resources = {"event_bus": EventBusResource(url=url)}
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources=resources)
        skip = event_stream.event_stream_sensor(ctx)
        assert isinstance(skip, dg.SkipReason) and "no new events after offset 0" in skip.skip_message
        offsets = bus.append([_track(i) for i in range(50)])
        result = event_stream.event_stream_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        (request,) = result.run_requests
        assert request.run_key == f"events:1-{offsets[-1]}|quarantine:1-0"
        assert Offsets.from_cursor(result.cursor).events == offsets[-1]
        again = event_stream.event_stream_sensor(
            dg.build_sensor_context(instance=instance, cursor=result.cursor, resources=resources))
        assert isinstance(again, dg.SkipReason)


def test_micro_batch_loads_events_and_the_collector_quarantine(local_env, closing):
    url = f"sqlite:///{local_env}/events.db"
    now = datetime.now(timezone.utc)
    accepted, quarantined = split([_track(1), _track(2), {"type": "track", "userId": "x"}], {}, now, "/v1/batch")
    closing(open_bus(url)).append(accepted)
    closing(open_quarantine_bus(url)).append(quarantined)
    resources = {**resources_for("local"), "event_bus": EventBusResource(url=url)}
    assets = [raw.events, staging.events, event_stream.collector_quarantine]
    for _ in range(2):  # a second run over the same offsets changes nothing
        result = dg.materialize(assets, resources=resources, partition_key=day_of(now))
        assert result.success
    with resources["warehouse"].connect() as conn:
        assert sorted(conn.query("select message_id from raw.events")["message_id"]) == ["m-1", "m-2"]
        assert conn.scalar("select count(*) from staging.events") == 2
        q = conn.query("select record_id, rule, attempts from quarantine.collector")
        assert len(q) == 1 and q.iloc[0]["rule"] == "event"


def test_sensor_overlaps_a_running_batch_but_not_a_queued_one(tmp_path, closing):
    """A run still executing does not hold the next batch back (it queues behind it on the pool);
    a run that has not started yet will read the waiting events itself, so none is added."""
    url = f"sqlite:///{tmp_path}/events.db"
    closing(open_bus(url)).append([_track(i) for i in range(5)])
    resources = {"event_bus": EventBusResource(url=url)}
    with dg.DagsterInstance.ephemeral() as instance:
        def tick():
            return event_stream.event_stream_sensor(dg.build_sensor_context(instance=instance, resources=resources))

        instance.add_run(dg.DagsterRun(job_name="event_micro_batch", run_id="running-1",
                                       status=dg.DagsterRunStatus.STARTED))
        assert len(tick().run_requests) == 1
        instance.add_run(dg.DagsterRun(job_name="event_micro_batch", run_id="launching-2",
                                       status=dg.DagsterRunStatus.NOT_STARTED))
        skip = tick()
        assert isinstance(skip, dg.SkipReason) and "launching-2 has not started yet" in skip.skip_message


def test_micro_batch_stages_only_new_events_and_a_full_restage_agrees(local_env, closing):
    """A micro-batch run (tagged with its offsets) stages only the events above the watermark, so
    its cost grows with the batch, not the day; repeating it or re-staging the day whole gives the
    same table."""
    url = f"sqlite:///{local_env}/events.db"
    bus = closing(open_bus(url))
    resources = {**resources_for("local"), "event_bus": EventBusResource(url=url)}
    assets = [raw.events, staging.events, event_stream.collector_quarantine]
    day = day_of(datetime.now(timezone.utc))

    def micro_batch():
        result = dg.materialize(assets, resources=resources, partition_key=day,
                                tags={"bus/offset_from": "1", "bus/offset_to": str(bus.last_offset())})
        assert result.success
        (mat,) = [m for m in result.asset_materializations_for_node("staging__events")]
        return mat.metadata["rows_in"].value

    bus.append([_track(i) for i in range(3)])
    assert micro_batch() == 3
    bus.append([_track(i) for i in range(3, 5)] + [{**_track(9), "userId": None, "anonymousId": None}])
    assert micro_batch() == 3  # only the new ones, one of them quarantined by staging
    assert micro_batch() == 0  # nothing new: nothing staged, nothing doubled
    with resources["warehouse"].connect() as conn:
        incremental = sorted(conn.query("select message_id from staging.events")["message_id"])
        assert incremental == [f"m-{i}" for i in range(5)]
        assert conn.scalar("select count(*) from quarantine.events where record_id = 'm-9'") == 1
    assert dg.materialize([staging.events], resources=resources, partition_key=day).success  # whole day
    with resources["warehouse"].connect() as conn:
        assert sorted(conn.query("select message_id from staging.events")["message_id"]) == incremental


def test_raw_events_loads_a_backlog_a_chunk_at_a_time(local_env, monkeypatch, closing):
    """A backlog larger than a chunk loads whole, once, in bus order, with one cursor at its end."""
    monkeypatch.setattr(raw, "EVENTS_CHUNK", 3)  # 3 records a page and a chunk: the 8 below take 3 chunks
    url = f"sqlite:///{local_env}/events.db"
    bus = closing(open_bus(url))
    bus.append([_track(i) for i in range(8)])
    resources = {**resources_for("local"), "event_bus": EventBusResource(url=url)}
    result = dg.materialize([raw.events], resources=resources)
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_loaded"].value == 8 and metadata["read_from_bus"].value == 8
    assert metadata["dagster/row_count"].value == 8
    bus.append([_track(i) for i in range(6, 11)])  # m-6, m-7 again (the bus keeps each once), m-8..m-10 new
    assert dg.materialize([raw.events], resources=resources).success
    with resources["warehouse"].connect() as conn:
        rows = conn.query("select message_id, bus_offset from raw.events order by bus_offset")
        cursor = conn.scalar("select cursor_json from ops.cursors where name = 'events'")
    assert rows["message_id"].tolist() == [f"m-{i}" for i in range(11)]
    assert rows["bus_offset"].is_unique and f'"offset": {int(rows["bus_offset"].max())}' in cursor


def test_raw_events_cut_short_keeps_whole_chunks_and_resumes_after_them(local_env, monkeypatch, closing):
    """Each chunk commits with the cursor at its end: a load failing in its second chunk keeps the
    first, and the next load reads on from there (nothing twice, nothing skipped)."""
    monkeypatch.setattr(raw, "EVENTS_CHUNK", 3)
    url = f"sqlite:///{local_env}/events.db"
    closing(open_bus(url)).append([_track(i) for i in range(7)])
    resources = {**resources_for("local"), "event_bus": EventBusResource(url=url)}
    frames = raw._events_frame
    calls = []

    def failing_second(records):
        calls.append(len(records))
        if len(calls) == 3:  # the 1st call only types the table; the 3rd is the second chunk
            raise RuntimeError("the load is cut short")
        return frames(records)

    monkeypatch.setattr(raw, "_events_frame", failing_second)
    assert not dg.materialize([raw.events], resources=resources, raise_on_error=False).success
    with resources["warehouse"].connect() as conn:
        assert conn.query("select message_id from raw.events order by bus_offset")["message_id"].tolist() == \
            ["m-0", "m-1", "m-2"]
    monkeypatch.setattr(raw, "_events_frame", frames)
    assert dg.materialize([raw.events], resources=resources).success
    with resources["warehouse"].connect() as conn:
        assert conn.query("select message_id from raw.events order by bus_offset")["message_id"].tolist() == \
            [f"m-{i}" for i in range(7)]
