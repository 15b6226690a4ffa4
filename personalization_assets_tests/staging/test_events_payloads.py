"""raw.events stores the bus's payload text without decoding it, and staging.events reads each
payload once: the same rows as decoding every event, and a window whose events all fail still
creates staging.events with text columns."""

import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from personalization_assets.assets.raw import _events_frame, epoch_utc
from personalization_assets.assets.staging import restage_events
from personalization_assets.bus.sqlite_bus import SqliteBus
from personalization_assets.staging.common import json_text
from personalization_assets.staging.events import stage_events

DAY = datetime(2026, 11, 28, tzinfo=timezone.utc)


def test_epoch_seconds_round_to_the_microsecond_as_fromtimestamp_does():
    rng = random.Random(3)
    seconds = [rng.uniform(1e9, 2e9) for _ in range(20_000)]
    seconds += [1.5e9 + 0.0000005, 1.5e9 + 0.0000015, 1764547200.9999996, 1764547200.0000025, 0.0]  # halves, carries
    expected = pd.to_datetime([datetime.fromtimestamp(s, tz=timezone.utc) for s in seconds], utc=True)
    assert (epoch_utc(np.array(seconds)) == expected).all()


def test_encoded_records_are_the_decoded_events_encoded_again(tmp_path):
    bus = SqliteBus(tmp_path / "e.db")
    events = [{"type": "track", "event": "Product Viewed", "messageId": f"m-{i}", "userId": f"u{i}",
               "properties": {"price": 2.5 + i / 3, "sku": "é✓", "n": 2**62, "nested": {"a": [1, None]}}}
              for i in range(5)]
    bus.append(events)
    decoded, encoded = bus.read(0), bus.read_encoded(0)
    assert [(r.offset, r.message_id, json_text(r.event)) for r in decoded] == [(o, m, p) for o, m, _, p in encoded]
    assert [r.received_at for r in decoded] == [datetime.fromtimestamp(t, tz=timezone.utc) for _, _, t, _ in encoded]
    from_text = _events_frame(encoded)
    from_events = _events_frame([(r.offset, r.message_id, r.received_at, json_text(r.event)) for r in decoded])
    pd.testing.assert_frame_equal(from_text, from_events)
    bus.close()


def _raw(payloads: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"message_id": [f"m-{i}" for i in range(len(payloads))], "bus_offset": range(1, len(payloads) + 1),
                         "received_at": pd.Series([DAY] * len(payloads), dtype="datetime64[ns, UTC]"),
                         "payload": payloads})


def test_a_staged_column_is_typed_by_the_rows_that_pass():
    """A user id held as a number by every valid event stays a number, even beside a rejected
    event whose user id is text (the rejected rows do not type the valid ones)."""
    staged = stage_events(_raw(['{"userId": 7, "timestamp": "2026-11-28T01:00:00Z", "event": "Product Viewed"}',
                                '{"userId": "u", "timestamp": "never"}']), now=DAY + timedelta(days=1))
    assert staged.valid["user_id"].tolist() == [7] and str(staged.valid["user_id"].dtype) == "int64"
    assert staged.quarantined["rule"].tolist() == ["events.timestamp"]


def test_a_first_window_without_events_creates_text_columns(duck):
    """No raw event in the window: the staged frame is empty, and the table it creates has text
    columns, so the next window's events insert (an empty frame used to type them as doubles)."""
    staged = stage_events(_raw([]), now=DAY + timedelta(days=1))
    assert staged.valid.empty and staged.valid["user_id"].dtype == object
    duck.execute("create schema if not exists raw")
    first = _raw(['{"userId": "u", "timestamp": "2026-11-29T01:00:00Z", "event": "Product Viewed"}'])
    first["received_at"] = pd.Series([DAY + timedelta(days=1)], dtype="datetime64[ns, UTC]")
    duck.insert_frame("raw", "events", first)
    restage_events(duck, DAY, DAY + timedelta(days=1))  # the day before the first event
    types = dict(duck.query("select column_name, data_type from information_schema.columns "
                            "where table_schema = 'staging' and table_name = 'events'").itertuples(index=False))
    assert types["user_id"] == "VARCHAR" and types["properties"] == "VARCHAR"
    restage_events(duck, DAY + timedelta(days=1), DAY + timedelta(days=2))
    assert duck.query("select user_id from staging.events")["user_id"].tolist() == ["u"]
