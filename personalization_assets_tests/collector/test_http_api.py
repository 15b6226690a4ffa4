"""The wire contract over real HTTP: auth, gzip, limits, per-event quarantine, server fields."""

from __future__ import annotations

import base64
import gzip
from datetime import datetime, timedelta, timezone

import orjson
import requests

from .conftest import WRITE_KEY

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


def _track(i: int, **extra) -> dict:
    return {"type": "track", "event": "Product Viewed", "userId": f"u{i}", "messageId": f"m-{i}",
            "properties": {"sku": f"S{i}"}, **extra}


def _post(url, path, body, headers=None, **kw):
    return requests.post(url + path, data=orjson.dumps(body), timeout=10,
                         headers={"Content-Type": "application/json", **(headers or {})}, **kw)


def test_write_key_as_basic_bearer_or_body_and_unknown_is_401(collector):
    u = collector.url
    assert _post(u, "/v1/track", _track(1), BASIC).status_code == 200
    assert _post(u, "/v1/track", _track(2), {"Authorization": f"Bearer {WRITE_KEY}"}).status_code == 200
    assert _post(u, "/v1/track", {**_track(3), "writeKey": WRITE_KEY}).status_code == 200
    bad = _post(u, "/v1/track", _track(4), {"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["code"] == "unauthorized" and bad.json()["message"]
    assert _post(u, "/v1/track", _track(5)).status_code == 401
    stored = collector.bus().read(0)
    assert sorted(r.message_id for r in stored) == ["m-1", "m-2", "m-3"]
    assert all("writeKey" not in r.event for r in stored)


def test_gzip_batch_with_one_bad_event_quarantines_it_and_accepts_the_rest(collector):
    body = {"batch": [_track(1), {"type": "track", "userId": "u2", "messageId": "bad-1"}, _track(3)],
            "sentAt": datetime.now(timezone.utc).isoformat()}
    r = requests.post(collector.url + "/v1/batch", data=gzip.compress(orjson.dumps(body)), timeout=10,
                      headers={**BASIC, "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "accepted": 2, "quarantined": 1, "duplicates": 0}
    assert [e.message_id for e in collector.bus().read(0)] == ["m-1", "m-3"]
    (q,) = collector.quarantine().read(0)
    assert q.event["rule"] == "event" and "required" in q.event["message"]
    assert q.event["payload"] == body["batch"][1]


def test_retried_batch_is_stored_once_including_its_quarantined_event(collector):
    body = {"batch": [_track(1), {"type": "nonsense", "userId": "u"}]}
    first = _post(collector.url, "/v1/batch", body, BASIC).json()
    again = _post(collector.url, "/v1/batch", body, BASIC).json()
    assert (first["accepted"], again["accepted"], again["duplicates"]) == (1, 0, 1)
    assert collector.bus().count() == 1 and collector.quarantine().count() == 1


def test_size_limits(collector):
    big = _track(1, properties={"blob": "x" * 33_000})
    assert _post(collector.url, "/v1/track", big, BASIC).status_code == 413
    r = _post(collector.url, "/v1/batch", {"batch": [big, _track(2)]}, BASIC)
    assert r.status_code == 200 and r.json()["quarantined"] == 1
    assert collector.quarantine().read(0)[0].event["rule"] == "event_too_large"
    huge = {"batch": [_track(i, properties={"b": "y" * 20_000}) for i in range(30)]}
    r = _post(collector.url, "/v1/batch", huge, BASIC)
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    bomb = gzip.compress(b'{"batch": [' + b" " * 2_000_000 + b"]}")
    r = requests.post(collector.url + "/v1/batch", data=bomb, timeout=10,
                      headers={**BASIC, "Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_malformed_bodies_are_400_with_code_and_message(collector):
    for data in (b"{not json", b"[1,2]", orjson.dumps({"batch": "x"})):
        r = requests.post(collector.url + "/v1/batch", data=data, headers=BASIC, timeout=10)
        assert r.status_code == 400 and set(r.json()) == {"code", "message"}
    assert collector.bus().count() == 0


def test_received_at_and_clock_skew_corrected_timestamp(collector):
    # the device clock is 1 h fast: it stamped the event 10 s before it sent the batch
    device_now = datetime.now(timezone.utc) + timedelta(hours=1)
    event = _track(1, originalTimestamp=(device_now - timedelta(seconds=10)).isoformat())
    before = datetime.now(timezone.utc)
    _post(collector.url, "/v1/batch", {"batch": [event], "sentAt": device_now.isoformat()}, BASIC)
    (rec,) = collector.bus().read(0)
    received = datetime.fromisoformat(rec.event["receivedAt"])
    corrected = datetime.fromisoformat(rec.event["timestamp"])
    assert before - timedelta(seconds=1) <= received <= datetime.now(timezone.utc)
    assert abs((received - corrected).total_seconds() - 10) < 0.01
    assert rec.event["originalTimestamp"] == event["originalTimestamp"]


def test_single_event_endpoints_set_the_type(collector):
    for kind, extra in [("identify", {"traits": {"email": "a@b.c"}}), ("page", {"name": "Home"}),
                        ("screen", {"name": "S"}), ("group", {"groupId": "g1"}),
                        ("alias", {"previousId": "anon"})]:
        body = {"userId": "u1", "messageId": f"m-{kind}", "type": "track", **extra}
        assert _post(collector.url, f"/v1/{kind}", body, BASIC).status_code == 200
    types = {r.message_id: r.event["type"] for r in collector.bus().read(0)}
    assert types == {f"m-{k}": k for k in ("identify", "page", "screen", "group", "alias")}


def test_health_and_metrics_on_the_admin_port_only(collector):
    _post(collector.url, "/v1/batch", {"batch": [_track(1), _track(1), {"type": "x"}]}, BASIC)
    assert requests.get(collector.admin_url + "/health", timeout=5).json()["status"] == "ok"
    for path in ("/health", "/metrics"):  # the public port shows neither pid, bus path nor metrics
        assert requests.get(collector.url + path, timeout=5).status_code == 404
    assert requests.post(collector.admin_url + "/v1/batch", data=b"{}", timeout=5).status_code in (404, 405)
    text = requests.get(collector.admin_url + "/metrics", timeout=5).text
    for name in ("collector_requests_total", "collector_events_accepted_total",
                 "collector_events_rejected_total", "collector_events_deduplicated_total",
                 "collector_request_duration_seconds_bucket", "collector_bus_append_duration_seconds_bucket",
                 "collector_last_event_timestamp_seconds"):
        assert name in text
    assert 'collector_requests_total{code="200",endpoint="/v1/batch"}' in text
