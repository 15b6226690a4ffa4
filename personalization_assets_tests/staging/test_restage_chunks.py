"""A whole-day restage of staging.events reads raw.events a chunk of bus offsets at a time: the
result is the one-chunk result, row for row, and the other days stay as they were."""

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from personalization_assets.assets.staging import STAGED_EVENTS_CURSOR, restage_events
from personalization_assets.assets.common import read_cursor

DAY = datetime(2026, 11, 28, tzinfo=timezone.utc)


def _raw(n: int) -> pd.DataFrame:
    """n events a day over two days, offsets in arrival order; every 5th has no identity."""
    rows = []
    for k in range(2 * n):
        received = DAY + timedelta(days=k // n, minutes=k % n)
        event = {"type": "track", "event": "Product Viewed", "messageId": f"m-{k}",
                 "timestamp": received.isoformat(), "properties": {"sku": f"S{k}", "price": 2.5, "currency": "eur"}}
        if k % 5:
            event["userId"] = f"u{k}"
        rows.append({"message_id": f"m-{k}", "bus_offset": k + 1, "received_at": received, "payload": json.dumps(event)})
    frame = pd.DataFrame(rows)
    frame["received_at"] = frame["received_at"].astype("datetime64[ns, UTC]")
    return frame


def _restaged(duck, chunk_rows: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    duck.execute("create schema if not exists raw")
    duck.execute("drop table if exists raw.events")
    duck.prepare_table("raw", "events", _raw(12))
    duck.insert_frame("raw", "events", _raw(12))
    for day in (DAY, DAY + timedelta(days=1)):  # both days once, then the first day again
        restage_events(duck, day, day + timedelta(days=1), chunk_rows=chunk_rows)
    staged = restage_events(duck, DAY, DAY + timedelta(days=1), chunk_rows=chunk_rows)
    assert (staged.rows_in, staged.valid_rows, len(staged.quarantined), staged.offsets) == (12, 9, 3, (1, 12))
    assert 0 < len(staged.sample) <= 10 and str(staged.sample["value_minor"].dtype) == "Int64"  # the preview
    events = duck.query("select * from staging.events order by cast(substr(message_id, 3) as integer)")
    quarantine = duck.query("select record_id, rule, status, attempts from quarantine.events order by record_id")
    return events, quarantine, read_cursor(duck, STAGED_EVENTS_CURSOR)


def test_restage_in_chunks_equals_one_chunk(duck):
    one = _restaged(duck, chunk_rows=1_000)
    for schema, table in (("staging", "events"), ("quarantine", "events"), ("ops", "cursors")):
        duck.execute(f"drop table {schema}.{table}")
    chunked = _restaged(duck, chunk_rows=5)  # 12 offsets a day: chunks of 5, 5 and 2
    pd.testing.assert_frame_equal(one[0], chunked[0])
    pd.testing.assert_frame_equal(one[1], chunked[1])
    assert one[2] == chunked[2] == {"offset": 24}
    assert len(chunked[0]) == 19 and len(chunked[1]) == 5 and set(chunked[1]["status"]) == {"open"}
    assert chunked[0]["currency"].eq("EUR").all()


def test_a_restage_cut_short_leaves_the_day_as_it_was(duck, monkeypatch):
    """Chunks are committed to a side table, the day replaced in one transaction at the end: a
    restage failing in its second chunk leaves the staged day whole, and no side table behind."""
    from personalization_assets import staging as logic

    before, _, _ = _restaged(duck, chunk_rows=5)
    stage, calls = logic.stage_events, []

    def failing_second(raw, *, now):
        calls.append(len(raw))
        if len(calls) == 2:
            raise RuntimeError("the restage is cut short")
        return stage(raw, now=now)

    monkeypatch.setattr(logic, "stage_events", failing_second)
    with pytest.raises(RuntimeError):
        restage_events(duck, DAY, DAY + timedelta(days=1), chunk_rows=5)
    after = duck.query("select * from staging.events order by cast(substr(message_id, 3) as integer)")
    pd.testing.assert_frame_equal(after, before)
    assert not duck.table_exists("staging", "events__restaged")


def test_a_restage_releases_the_open_rows_of_its_window_that_pass_now(duck):
    """An open quarantine row of an event that passes today's rules is released by the restage of
    its day; an open row of another day's event stays open."""
    _restaged(duck, chunk_rows=5)
    duck.execute("insert into quarantine.events (source, record_id, raw_payload, rule, message, first_seen, last_seen, "
                 "attempts, status) select source, r.id, raw_payload, 'events.old_rule', message, first_seen, "
                 "last_seen, attempts, status from quarantine.events, (values ('m-1'), ('m-13')) r(id) "
                 "where record_id = 'm-5'")
    restage_events(duck, DAY, DAY + timedelta(days=1), chunk_rows=5)
    status = dict(duck.query("select record_id, status from quarantine.events "
                             "where rule = 'events.old_rule'").itertuples(index=False))
    assert status == {"m-1": "released", "m-13": "open"}
    assert duck.scalar("select status from quarantine.events where record_id = 'm-5'") == "open"  # fails again
