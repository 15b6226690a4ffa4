"""Issue 18, finding 3: the event time follows Segment's and RudderStack's semantics. An explicit
`timestamp` (historical import, offline queue, rudder-sdk-node's app timestamp) is kept; the
clock-skew correction receivedAt - (sentAt - originalTimestamp) applies only without one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import requests
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from personalization_assets.collector.enrich import enrich, parse_ts

from .conftest import WRITE_KEY

UTC = timezone.utc
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_explicit_timestamp_wins_over_original_timestamp_and_sent_at():
    """rudder-sdk-node's shape: the app's timestamp, plus originalTimestamp and sentAt at send time."""
    event = {"messageId": "m", "timestamp": "2026-02-20T08:00:00.000Z",
             "originalTimestamp": "2026-03-01T13:59:58.000Z"}  # device clock 2 h fast
    out = enrich(event, NOW, {"sentAt": "2026-03-01T14:00:00.000Z"})
    assert out["timestamp"] == "2026-02-20T08:00:00.000Z"
    assert out["originalTimestamp"] == event["originalTimestamp"] and out["sentAt"] == "2026-03-01T14:00:00.000Z"


def test_skew_correction_applies_to_original_timestamp_only_when_timestamp_is_absent():
    out = enrich({"messageId": "m", "originalTimestamp": "2026-03-01T13:59:50Z"}, NOW,
                 {"sentAt": "2026-03-01T14:00:00Z"})
    assert parse_ts(out["timestamp"]) == NOW - timedelta(seconds=10)
    no_sent = enrich({"messageId": "m", "originalTimestamp": "2026-03-01T11:59:50Z"}, NOW, {})
    assert parse_ts(no_sent["timestamp"]) == NOW - timedelta(seconds=10)
    neither = enrich({"messageId": "m"}, NOW, {"sentAt": "2026-03-01T14:00:00Z"})
    assert neither["timestamp"] == "2026-03-01T12:00:00.000Z" and "originalTimestamp" not in neither


def test_a_lone_timestamp_is_also_the_original_timestamp():
    out = enrich({"messageId": "m", "timestamp": "2026-02-01T00:00:00+01:00"}, NOW, {"sentAt": "2026-03-01T12:00:00Z"})
    assert out["timestamp"] == "2026-01-31T23:00:00.000Z"
    assert out["originalTimestamp"] == "2026-02-01T00:00:00+01:00"


def test_rudder_node_shaped_batch_keeps_every_event_time_over_http(collector):
    sent_at = datetime.now(UTC)
    events = [{"type": "track", "event": "Product Viewed", "userId": "u", "messageId": f"r{i}",
               "timestamp": (sent_at - timedelta(days=30 + i)).isoformat(),
               "originalTimestamp": (sent_at - timedelta(seconds=1)).isoformat()} for i in range(20)]
    r = requests.post(collector.url + "/v1/batch", timeout=10, auth=(WRITE_KEY, ""),
                      data=orjson.dumps({"batch": events, "sentAt": sent_at.isoformat()}))
    assert r.status_code == 200 and r.json()["accepted"] == 20
    stored = {rec.message_id: rec.event for rec in collector.bus().read(0)}
    for e in events:
        assert parse_ts(stored[e["messageId"]]["timestamp"]) == parse_ts(e["timestamp"]).replace(
            microsecond=parse_ts(e["timestamp"]).microsecond // 1000 * 1000)


def test_python_sdks_historical_timestamps_are_kept(collector):
    when = datetime(2025, 6, 1, 10, 30, 15, 123000, tzinfo=UTC)
    sent = []
    for client in (SegmentClient(WRITE_KEY, host=collector.url), RudderClient(WRITE_KEY, host=collector.url)):
        sent.append(client.track("u1", "Product Viewed", {"sku": "S"}, timestamp=when)[1])
        client.flush()
        client.shutdown()
    stored = {rec.message_id: rec.event for rec in collector.bus().read(0)}
    for msg in sent:
        assert stored[msg["messageId"]]["timestamp"] == "2025-06-01T10:30:15.123Z"
