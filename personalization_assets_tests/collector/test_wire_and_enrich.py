"""Pure parsing and server-field logic, including property tests."""

from __future__ import annotations

import base64
import gzip
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from personalization_assets.collector.enrich import enrich, parse_ts
from personalization_assets.collector.intake import split
from personalization_assets.collector.validate import minimal_violations
from personalization_assets.collector.wire import WireError, decode_body, events_from, write_key_from

UTC = timezone.utc
aware = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@given(st.binary(max_size=5000))
def test_gzip_round_trips_any_body(data):
    assert decode_body(gzip.compress(data), "gzip", 10_000) == data


@given(st.binary(max_size=300))
def test_garbage_gzip_is_a_400_or_decodes_never_crashes(data):
    try:
        decode_body(data, "gzip", 10_000)
    except WireError as exc:
        assert exc.status in (400, 413)


def test_inflated_size_is_bounded():
    with pytest.raises(WireError) as info:
        decode_body(gzip.compress(b"a" * 100_001), "gzip", 100_000)
    assert info.value.status == 413
    assert decode_body(gzip.compress(b"a" * 100_000), "gzip", 100_000) == b"a" * 100_000
    with pytest.raises(WireError) as info:
        decode_body(b"x", "br", 10)
    assert info.value.status == 415


@given(st.text(alphabet=st.characters(blacklist_characters=":", blacklist_categories=("Cs",)), min_size=1))
def test_basic_auth_key_round_trips(key):
    header = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    assert write_key_from(header, {"writeKey": "other"}) == key


def test_write_key_sources():
    assert write_key_from("Bearer abc", {}) == "abc"
    assert write_key_from(None, {"writeKey": "k"}) == "k"
    assert write_key_from("Basic !!!notbase64", {"writeKey": "k"}) is None
    assert write_key_from(None, {}) is None


def test_events_from_batch_and_single():
    events, shared = events_from({"batch": [{"a": 1}], "sentAt": "x", "writeKey": "k"}, None)
    assert events == [{"a": 1}] and shared == {"sentAt": "x"}
    (event,), _ = events_from({"type": "track", "writeKey": "k", "userId": "u"}, "page")
    assert event == {"type": "page", "userId": "u"}
    with pytest.raises(WireError):
        events_from({"batch": {}}, None)


@given(received=aware, skew_s=st.integers(-10**7, 10**7), delay_ms=st.integers(0, 10**8))
def test_corrected_timestamp_cancels_device_clock_skew(received, skew_s, delay_ms):
    """Whatever the device clock error, the corrected time is receivedAt minus the queueing delay."""
    device_sent = received + timedelta(seconds=skew_s)
    device_original = device_sent - timedelta(milliseconds=delay_ms)
    out = enrich({"originalTimestamp": device_original.isoformat(), "messageId": "m"},
                 received, {"sentAt": device_sent.isoformat()})
    corrected = parse_ts(out["timestamp"])
    expected = received - timedelta(milliseconds=delay_ms)
    assert abs(corrected - expected) <= timedelta(milliseconds=1)
    assert out["originalTimestamp"] == device_original.isoformat()


def test_enrich_without_sent_at_keeps_the_client_timestamp_and_fills_message_id():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    out = enrich({"timestamp": "2025-12-31T23:00:00"}, now, {})
    assert parse_ts(out["timestamp"]) == datetime(2025, 12, 31, 23, tzinfo=UTC)
    assert out["messageId"].startswith("srv-") and out["receivedAt"] == "2026-01-01T00:00:00.000Z"
    assert parse_ts(enrich({}, now, {})["timestamp"]) == now


def test_batch_context_is_merged_under_the_event_context():
    out = enrich({"context": {"ip": "1.2.3.4"}}, datetime.now(UTC), {"context": {"ip": "0", "locale": "de"}})
    assert out["context"] == {"ip": "1.2.3.4", "locale": "de"}


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=10))
def test_any_json_event_is_accepted_or_quarantined_with_a_reason(raw):
    now = datetime.now(UTC)
    accepted, quarantined = split([raw], {}, now, "/v1/batch")
    assert len(accepted) + len(quarantined) == 1
    for q in quarantined:
        assert q["rule"] and q["message"] and q["messageId"]
        assert q["payload"] == raw or q["rule"] in ("unserializable", "too_deep", "integer_out_of_range")
    for a in accepted:
        assert minimal_violations(raw) == []


def test_quarantine_id_is_stable_across_retries():
    raw = {"type": "bogus", "userId": "u"}
    now = datetime.now(UTC)
    (_, (q1,)), (_, (q2,)) = split([raw], {}, now, "/v1/batch"), split([dict(raw)], {}, now, "/v1/batch")
    assert q1["messageId"] == q2["messageId"]


@pytest.mark.parametrize("event,rule", [
    ({"type": "track", "userId": "u"}, "event"),
    ({"type": "track", "event": "E"}, "identity"),
    ({"type": "group", "userId": "u"}, "groupId"),
    ({"type": "identify", "userId": "u", "traits": [1]}, "traits"),
    ({"type": "page", "userId": ["u"]}, "identity"),
    ({"type": "track", "event": "", "anonymousId": "a"}, "event"),
])
def test_minimal_rules(event, rule):
    assert rule in [v.rule for v in minimal_violations(event)]


@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt"])
def test_unparseable_client_time_is_quarantined_under_its_field(field):
    event = {"type": "page", "userId": "u", field: "yesterday"}
    accepted, (q,) = split([event], {}, datetime.now(UTC), "/v1/page")
    assert accepted == [] and q["rule"] == field and "yesterday" in q["message"]


@given(st.datetimes(timezones=st.just(UTC)), st.datetimes(timezones=st.just(UTC)))
def test_extreme_client_clocks_never_crash(original, sent):
    event = {"type": "track", "event": "E", "userId": "u", "timestamp": original.isoformat()}
    accepted, quarantined = split([event], {"sentAt": sent.isoformat()}, datetime.now(UTC), "/v1/batch")
    assert len(accepted) + len(quarantined) == 1
    if quarantined:
        assert quarantined[0]["rule"] == "timestamp"
