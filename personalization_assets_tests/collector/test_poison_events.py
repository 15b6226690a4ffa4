"""Issue 18, findings 2 and 7: one bad event or request field never costs the rest of the batch,
and what cannot be stored faithfully is quarantined or refused, never accepted silently."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import requests

from personalization_assets.collector import metrics
from personalization_assets.collector.intake import quarantine_record, split
from personalization_assets.collector.validate import Violation
from personalization_assets.collector.wire import WireError, decode_body, parse_json_object

from .conftest import WRITE_KEY

AUTH = {"Authorization": f"Bearer {WRITE_KEY}", "Content-Type": "application/json"}
UTC = timezone.utc


def _track(i: int, **extra) -> dict:
    return {"type": "track", "event": "Product Viewed", "userId": f"u{i}", "messageId": f"m-{i}",
            "properties": {"sku": f"S{i}"}, **extra}


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _batch_bytes(events: list[bytes], **fields) -> bytes:
    extra = b"".join(b',"' + k.encode() + b'":' + orjson.dumps(v) for k, v in fields.items())
    return b'{"batch":[' + b",".join(events) + b"]" + extra + b"}"


def test_deeply_nested_event_is_quarantined_and_the_rest_of_the_batch_accepted(collector):
    poison = b'{"type":"track","event":"Product Viewed","userId":"u9","messageId":"deep","properties":' \
             + _nested(980) + b"}"
    body = _batch_bytes([orjson.dumps(_track(i)) for i in range(5)] + [poison])
    r = requests.post(collector.url + "/v1/batch", data=body, headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["quarantined"]) == (5, 1)
    (q,) = collector.quarantine().read(0)
    assert q.message_id == "deep" and q.event["rule"] == "too_deep" and "nested" in q.event["message"]
    assert q.event["payload"]["messageId"] == "deep"  # kept as JSON, cut below the storable depth


def test_quarantine_record_of_an_unrepresentable_event_never_raises():
    deep: dict = {}
    cur = deep
    for _ in range(3000):
        cur["a"] = {}
        cur = cur["a"]
    now = datetime.now(UTC)
    for raw in (deep, {"n": 2**80, "messageId": "big"}, [deep]):
        rec = quarantine_record(raw, [Violation("x", "y")], now, "/v1/batch")
        assert orjson.loads(orjson.dumps(rec))["rule"] == "x"
    assert quarantine_record({"n": 2**80, "messageId": "big"}, [Violation("x", "y")], now, "/")["payload"]["n"] \
        == str(2**80)


def test_batch_sent_at_that_overflows_is_ignored_with_a_reason_not_a_500(collector):
    events = [_track(i, originalTimestamp="2026-01-01T00:00:00Z") for i in range(3)]
    body = {"batch": events, "sentAt": "0001-01-01T00:00:00+01:00"}
    r = requests.post(collector.url + "/v1/batch", data=orjson.dumps(body), headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3 and "sentAt" in r.json()["ignored"]
    stored = [rec.event for rec in collector.bus().read(0)]
    assert [e["timestamp"] for e in stored] == ["2026-01-01T00:00:00.000Z"] * 3  # no skew correction


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "2300-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                   "9999-12-31T23:30:00-01:00", "0001-01-01T00:00:00+01:00"])
def test_timestamps_outside_the_window_are_quarantined(stamp):
    now = datetime.now(UTC)
    for field in ("timestamp", "originalTimestamp"):
        accepted, quarantined = split([{"type": "track", "event": "E", "userId": "u", field: stamp}], {},
                                      now, "/v1/batch")
        assert accepted == [] and quarantined[0]["rule"] == field, (field, quarantined)


def test_timestamps_inside_the_window_are_kept():
    now = datetime.now(UTC)
    for delta in (timedelta(days=-365 * 9), timedelta(hours=23)):
        stamp = (now + delta).isoformat()
        accepted, _ = split([{"type": "track", "event": "E", "userId": "u", "timestamp": stamp}], {},
                            now, "/v1/batch")
        assert len(accepted) == 1


def test_integers_beyond_64_bits_are_quarantined_not_turned_into_floats(collector):
    body = b'{"batch":[' + orjson.dumps(_track(1)) + b',{"type":"track","event":"Product Viewed",' \
           b'"userId":"u2","messageId":"big","properties":{"qty":123456789012345678901234567890}}]}'
    r = requests.post(collector.url + "/v1/batch", data=body, headers=AUTH, timeout=10)
    assert r.status_code == 200 and (r.json()["accepted"], r.json()["quarantined"]) == (1, 1), r.text
    (q,) = collector.quarantine().read(0)
    assert q.event["rule"] == "integer_out_of_range"
    assert q.event["payload"]["properties"]["qty"] == "123456789012345678901234567890"
    assert [rec.message_id for rec in collector.bus().read(0)] == ["m-1"]


def test_parse_keeps_exact_big_integers_and_ordinary_numbers():
    body = parse_json_object(b'{"a": 18446744073709551616, "b": 12.5, "c": "12345678901234567890123"}')
    assert body == {"a": 2**64, "b": 12.5, "c": "12345678901234567890123"}
    assert isinstance(body["a"], int)


def test_gzip_without_its_crc_trailer_or_with_a_second_member_is_400():
    whole = gzip.compress(b'{"batch": []}')
    for data in (whole[:-8], whole[:-1], whole + gzip.compress(b'{"batch": [1]}'), whole + b"junk"):
        with pytest.raises(WireError) as info:
            decode_body(data, "gzip", 10_000)
        assert info.value.status == 400
    assert decode_body(whole, "gzip", 10_000) == b'{"batch": []}'


def test_rejected_reason_label_comes_from_a_fixed_vocabulary(collector):
    def reasons() -> set[str]:
        return {s.labels["reason"] for m in metrics.EVENTS_REJECTED.collect() for s in m.samples}

    before = reasons()
    products = [{"sku": "a", "price": 1}] * 3
    batch = [{"type": "track", "event": "Order Completed", "userId": "u", "messageId": f"o{i}",
              "properties": {"order_id": "o", "products": products * (i // 3) + [{"price": "x"}]}}
             for i in range(60)]
    r = requests.post(collector.url + "/v1/batch", data=orjson.dumps({"batch": batch}), headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.json()["quarantined"] == 60
    new = reasons() - before
    assert len(new) <= 1 and new <= metrics.REJECT_REASONS, new
    assert all(r in metrics.REJECT_REASONS for r in reasons())


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_the_trigger_engine_never_reads_an_out_of_window_time_raw(stamp):
    """Records on the bus from before the fix (or written by other means) are skipped, never timed."""
    from personalization_assets.realtime.events import BadEvent, from_segment

    now = datetime.now(UTC)
    payload = {"type": "track", "event": "Product Added", "userId": "u", "timestamp": stamp,
               "properties": {"cart_id": "c"}}
    try:
        event = from_segment(payload, now)
    except BadEvent as exc:
        assert "timestamp" in str(exc) or "event time" in str(exc)
    else:  # only a future time may remain, capped at the receive time
        assert event.at == now and stamp.startswith("9999")


def test_the_trigger_engine_uses_the_collectors_window():
    from personalization_assets.collector.enrich import MAX_EVENT_AGE
    from personalization_assets.realtime import events

    assert events.MAX_EVENT_AGE == MAX_EVENT_AGE


def test_a_lone_surrogate_costs_its_event_only(collector):
    """JSON.stringify of a JavaScript string cut mid-emoji escapes a lone surrogate: valid JSON
    syntax, not valid Unicode. orjson refused the whole body (400: every event of the batch lost)."""
    body = b'{"batch":[' + orjson.dumps(_track(1)) + b',{"type":"track","event":"Product Viewed",' \
           b'"userId":"u2","messageId":"cut","properties":{"name":"\\ud83d"}}]}'
    r = requests.post(collector.url + "/v1/batch", data=body, headers=AUTH, timeout=10)
    assert r.status_code == 200 and (r.json()["accepted"], r.json()["quarantined"]) == (1, 1), r.text
    (q,) = collector.quarantine().read(0)
    assert q.event["rule"] == "invalid_text" and q.event["payload"]["properties"]["name"] == "\\ud83d"
    with pytest.raises(WireError):
        parse_json_object(b'{"a": "\\ud83d", "b": 1e400}')


@pytest.mark.parametrize("kind", [["track"], {"a": 1}, 3, None])
def test_a_type_that_is_not_a_string_is_a_plain_violation(kind):
    """Found by bench.fuzz: a list as `type` raised TypeError (unhashable) inside validation."""
    accepted, (q,) = split([{"type": kind, "userId": "u", "event": "E"}], {}, datetime.now(UTC), "/v1/batch")
    assert accepted == [] and q["rule"] == "type"


@pytest.mark.parametrize("depth", [1022, 1030, 5000])
def test_an_event_nested_past_the_parsers_limit_costs_its_event_only(collector, depth):
    """orjson reads at most 1024 levels: one event nested deeper made the whole batch a 400, so a
    client dropped its good events too. Now that event alone is quarantined, with its messageId."""
    poison = b'{"type":"track","event":"Product Viewed","userId":"u9","messageId":"deep","properties":' \
             + _nested(depth) + b"}"
    body = _batch_bytes([orjson.dumps(_track(i)) for i in range(5)] + [poison], sentAt="2026-01-01T00:00:00Z")
    r = requests.post(collector.url + "/v1/batch", data=body, headers=AUTH, timeout=10)
    assert r.status_code == 200 and (r.json()["accepted"], r.json()["quarantined"]) == (5, 1), r.text
    (q,) = collector.quarantine().read(0)
    assert (q.message_id, q.event["rule"]) == ("deep", "too_deep")
    assert [rec.message_id for rec in collector.bus().read(0)] == [f"m-{i}" for i in range(5)]
    single = b'{"event":"Product Viewed","userId":"u9","messageId":"deep-1","properties":' + _nested(depth) + b"}"
    r = requests.post(collector.url + "/v1/track", data=single, headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.json()["quarantined"] == 1, r.text


def test_a_deep_event_beside_a_64_bit_overflow_costs_only_its_event(collector):
    """A >64-bit integer anywhere sends the body through the stdlib parser, whose depth limit is
    Python's stack (about 1,000 levels, below orjson's 1,024): the deep event beside it must not cost the batch."""
    poison = b'{"type":"track","event":"Product Viewed","userId":"u9","messageId":"deep","properties":' \
             + _nested(1010) + b"}"
    big = b'{"type":"track","event":"Product Viewed","userId":"u2","messageId":"big","properties":{"q":' \
          + str(2**70).encode() + b"}}"
    r = requests.post(collector.url + "/v1/batch", data=_batch_bytes([orjson.dumps(_track(1)), poison, big]),
                      headers=AUTH, timeout=10)
    assert r.status_code == 200 and (r.json()["accepted"], r.json()["quarantined"]) == (1, 2), r.text
    assert sorted(q.event["rule"] for q in collector.quarantine().read(0)) == ["integer_out_of_range", "too_deep"]


@pytest.mark.parametrize("body", [
    b'{"batch":[' + _nested(1100) + b' 1]}',  # a missing comma beside a deep part
    b'{"batch":[' + _nested(1100) + b"]} trailing",
    b'{"batch":[' + _nested(1100) + b",]}",
    b'{"batch":[' + b"[" * 1100,
    b'{1:' + _nested(1100) + b"}",
])
def test_a_deep_body_with_a_syntax_error_is_still_400(body):
    with pytest.raises(WireError) as info:
        parse_json_object(body)
    assert info.value.status == 400 and info.value.code == "invalid_json"
