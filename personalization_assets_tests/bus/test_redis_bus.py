"""Redis Streams bus against the real server on 127.0.0.1:6379."""

from __future__ import annotations

import time
import uuid

import pytest

from personalization_assets.bus import open_bus
from personalization_assets.bus.redis_bus import id_to_offset, offset_to_id

pytestmark = pytest.mark.redis


@pytest.fixture
def bus(redis_url):
    stream = f"test-events-{uuid.uuid4().hex[:8]}"
    b = open_bus(f"{redis_url}?stream={stream}&dedup_window=60")
    yield b
    b.drop()
    b.close()


def _ev(i: int) -> dict:
    return {"type": "track", "event": "Viewed", "messageId": f"m-{i}", "properties": {"i": i}}


def test_offsets_map_to_stream_ids_and_back():
    assert offset_to_id(id_to_offset("1700000000123-7")) == "1700000000123-7"
    assert id_to_offset("5-1") < id_to_offset("5-2") < id_to_offset("6-0")


def test_append_read_and_dedup(bus):
    first = bus.append_detailed([_ev(1), _ev(2), _ev(1)])
    assert [a.duplicate for a in first] == [False, False, True]
    assert first[2].offset == first[0].offset < first[1].offset
    again = bus.append_detailed([_ev(2), _ev(3)])
    assert [a.duplicate for a in again] == [True, False]
    records = bus.read(0)
    assert [r.message_id for r in records] == ["m-1", "m-2", "m-3"]
    assert records[0].event["properties"] == {"i": 1}
    assert abs(records[0].received_at.timestamp() - time.time()) < 60
    assert [r.message_id for r in bus.read(records[0].offset, limit=1)] == ["m-2"]
    assert bus.last_offset() == records[-1].offset


def test_dedup_key_expires_with_the_window(redis_url):
    b = open_bus(f"{redis_url}?stream=test-win-{uuid.uuid4().hex[:8]}&dedup_window=1")
    try:
        b.append([_ev(1)])
        time.sleep(1.2)
        assert b.append_detailed([_ev(1)])[0].duplicate is False
        assert b.count() == 2
    finally:
        b.drop()


def test_consumer_group_redelivers_until_ack(bus):
    offsets = bus.append([_ev(i) for i in range(5)])
    got = bus.read_group("g", "c1", limit=3)
    assert [r.offset for r in got] == offsets[:3]
    # c1 crashed before acking: it gets its pending entries again
    assert [r.offset for r in bus.read_group("g", "c1", limit=3)] == offsets[:3]
    # another consumer of the same group gets only the undelivered rest
    assert [r.offset for r in bus.read_group("g", "c2", limit=10)] == offsets[3:]
    bus.ack("g", offsets[:3])
    assert bus.read_group("g", "c1", limit=10) == []
    t0 = time.monotonic()
    assert bus.read_group("g", "c1", limit=10, block_ms=200) == []
    assert time.monotonic() - t0 >= 0.15
