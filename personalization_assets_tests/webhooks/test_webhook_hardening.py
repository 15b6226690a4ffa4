"""Issue 18 on the signed webhooks: Mailgun token replay (finding 1), a poison event in a signed
request (finding 2), a NaN signature timestamp (finding 7) and stable 503 bodies (finding 6)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests

from personalization_assets.bus import open_bus, open_quarantine_bus
from personalization_assets.webhooks import create_webhook_app
from personalization_assets.webhooks.replay import SqliteTokenLedger
from personalization_assets_tests.conftest import require_service
from personalization_assets_tests.webhooks.signing import SendGridKeys, generic_headers, mailgun_body
from personalization_assets_tests.asgi import free_port, serving
from personalization_assets_tests.webhooks.test_webhook_receivers import GENERIC_SECRET, MAILGUN_KEY

JSON = {"Content-Type": "application/json"}


def _mg_event(i: int, now: int, **extra) -> dict:
    return {"event": "delivered", "id": f"mg-{i}", "timestamp": now, "recipient": "bob@example.org", **extra}


def _deep(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.fixture
def hooks(tmp_path):
    bus_url = f"sqlite:///{tmp_path}/email_events.db?table=email_events"
    keys = SendGridKeys()
    app = create_webhook_app(None, {"bus_url": bus_url, "mailgun": {"signing_key": MAILGUN_KEY},
                                    "generic": {"secret": GENERIC_SECRET}, "sendgrid": {"public_key": keys.public_key}})
    with serving(app, "the webhooks") as port:
        yield f"http://127.0.0.1:{port}", bus_url, app, keys


def _stored(bus_url: str) -> list[dict]:
    bus = open_bus(bus_url)
    try:
        return [r.event for r in bus.read(0)]
    finally:
        bus.close()


def test_a_replayed_mailgun_signature_is_refused_even_with_other_event_data(hooks):
    url, bus_url, _, _ = hooks
    now = int(time.time())
    first = json.loads(mailgun_body(MAILGUN_KEY, _mg_event(1, now), now, token="t" * 50))
    assert requests.post(url + "/mailgun", json=first, timeout=10).status_code == 200
    forged = {"signature": first["signature"],  # the captured block, carrying a permanent bounce
              "event-data": _mg_event(2, now, event="failed", severity="permanent", recipient="victim@example.org")}
    again = requests.post(url + "/mailgun", json=forged, timeout=10)
    assert again.status_code == 401 and again.json()["code"] == "replayed"
    assert requests.post(url + "/mailgun", json=first, timeout=10).status_code == 401
    assert [e["provider_event_id"] for e in _stored(bus_url)] == ["mg-1"]


def test_a_token_is_released_when_the_bus_append_fails_so_the_retry_is_stored(hooks):
    url, bus_url, app, _ = hooks
    now = int(time.time())
    body = mailgun_body(MAILGUN_KEY, _mg_event(3, now), now)
    real = app.state.store.append
    app.state.store.append = lambda *a: (_ for _ in ()).throw(ConnectionError("redis at 10.0.0.7:6379 down"))
    failed = requests.post(url + "/mailgun", data=body, headers=JSON, timeout=10)
    assert failed.status_code == 503 and failed.json()["code"] == "bus_unavailable"
    assert "10.0.0.7" not in failed.text and "ConnectionError" not in failed.text
    app.state.store.append = real
    assert requests.post(url + "/mailgun", data=body, headers=JSON, timeout=10).status_code == 200
    assert [e["provider_event_id"] for e in _stored(bus_url)] == ["mg-3"]


def test_token_ledger_prunes_after_its_window(tmp_path):
    ledger = SqliteTokenLedger(tmp_path / "t.db", keep_s=10)
    assert ledger.claim("mailgun", "a", now=1000) and not ledger.claim("mailgun", "a", now=1005)
    assert ledger.claim("mailgun", "b", now=1040)  # prunes "a", which is older than the window
    assert ledger.claim("mailgun", "a", now=1041)
    ledger.close()


_SERVE = ("import sys, json; from personalization_assets.collector import run_collector; "
          "run_collector('127.0.0.1', int(sys.argv[1]), sys.argv[2], workers=2, admin_port=int(sys.argv[3]), "
          "webhooks=json.loads(sys.argv[4]))")


def test_two_collector_workers_share_the_seen_tokens(tmp_path):
    port, admin = free_port(), free_port()
    email_bus = f"sqlite:///{tmp_path}/email_events.db?table=email_events"
    config = {"bus_url": email_bus, "mailgun": {"signing_key": MAILGUN_KEY}}
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(port), f"sqlite:///{tmp_path}/events.db",
                             str(admin), json.dumps(config)])
    try:
        pids: set = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            try:
                pids.add(requests.get(f"http://127.0.0.1:{admin}/health", timeout=1).json()["worker_pid"])
            except requests.RequestException:
                time.sleep(0.2)
        assert len(pids) == 2, "both workers should be up"
        now = int(time.time())
        body = mailgun_body(MAILGUN_KEY, _mg_event(7, now), now)
        codes = [requests.post(f"http://127.0.0.1:{port}/webhooks/mailgun", data=body, headers=JSON,
                               timeout=10).status_code for _ in range(12)]  # new connection each: both workers
        assert sorted(codes) == [200] + [401] * 11
    finally:
        proc.terminate()
        proc.wait(30)
    assert [e["provider_event_id"] for e in _stored(email_bus)] == ["mg-7"]


def test_redis_ledger_refuses_a_reused_token(redis_url):
    from personalization_assets.webhooks.replay import open_token_ledger

    ledger = open_token_ledger(redis_url + "?stream=email_events", keep_s=5)
    token = f"tok-{time.time_ns()}"
    assert ledger.claim("mailgun", token) and not ledger.claim("mailgun", token)
    ledger.release("mailgun", token)
    assert ledger.claim("mailgun", token)
    ledger.release("mailgun", token)
    ledger.close()


def test_a_signed_event_nested_980_deep_is_quarantined_and_the_rest_stored(hooks):
    url, bus_url, _, keys = hooks
    now = int(time.time())
    sg = ('[{"event":"delivered","email":"a@example.com","timestamp":%d,"sg_event_id":"ok-1"},'
          '{"event":"delivered","email":"b@example.com","timestamp":%d,"sg_event_id":"deep-1","x":%s}]'
          % (now, now, _deep(980))).encode()
    r = requests.post(url + "/sendgrid", data=sg, headers=keys.headers(sg, now), timeout=10)
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0, "quarantined": 1}, r.text
    generic = ('{"events":[{"id":"g1","type":"open","email":"c@example.com","timestamp":%d},'
               '{"id":"g2","type":"open","email":"c@example.com","timestamp":%d,"x":%s},'
               '{"id":"g3","type":"open","email":"c@example.com","timestamp":"0001-01-01T00:00:00+01:00"}]}'
               % (now, now, _deep(980))).encode()
    r = requests.post(url + "/generic", data=generic, headers=generic_headers(GENERIC_SECRET, generic, now), timeout=10)
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0, "quarantined": 2}, r.text
    mg = ('{"signature":%s,"event-data":{"event":"delivered","id":"mg-deep","x":%s}}'
          % (json.dumps(json.loads(mailgun_body(MAILGUN_KEY, {}, now))["signature"]), _deep(980))).encode()
    r = requests.post(url + "/mailgun", data=mg, headers=JSON, timeout=10)
    assert r.status_code == 200 and r.json()["quarantined"] == 1, r.text
    assert sorted(e["provider_event_id"] for e in _stored(bus_url)) == ["g1", "ok-1"]


@pytest.mark.parametrize("stamp", ["NaN", "nan", "-nan", "inf", "1e999"])
def test_generic_signature_timestamp_must_be_finite(hooks, stamp):
    url, bus_url, _, _ = hooks
    body = b'{"events":[{"id":"n1","type":"open","email":"c@example.com","timestamp":1700000000}]}'
    headers = {**JSON, "X-Webhook-Timestamp": stamp, "X-Webhook-Signature": _sign(body, stamp)}
    r = requests.post(url + "/generic", data=body, headers=headers, timeout=10)
    assert r.status_code == 401 and r.json()["code"] == "bad_timestamp", r.text
    assert _stored(bus_url) == []


def _sign(body: bytes, stamp: str) -> str:
    from personalization_assets.webhooks.verify import sign_generic

    return sign_generic(GENERIC_SECRET, body, stamp)


@pytest.mark.parametrize("depth", [1030, 4000])
def test_a_signed_event_nested_past_the_parsers_limit_is_quarantined_and_the_rest_stored(hooks, depth):
    """orjson reads at most 1024 levels: such an event made the whole signed batch a 400."""
    url, bus_url, _, keys = hooks
    now = int(time.time())
    sg = ('[{"event":"delivered","email":"a@example.com","timestamp":%d,"sg_event_id":"ok-%d"},'
          '{"event":"delivered","email":"b@example.com","timestamp":%d,"sg_event_id":"deep-1","x":%s}]'
          % (now, depth, now, _deep(depth))).encode()
    r = requests.post(url + "/sendgrid", data=sg, headers=keys.headers(sg, now), timeout=10)
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0, "quarantined": 1}, r.text
    generic = ('{"events":[{"id":"g-%d","type":"open","email":"c@example.com","timestamp":%d},'
               '{"id":"g2","type":"open","email":"c@example.com","timestamp":%d,"x":%s}]}'
               % (depth, now, now, _deep(depth))).encode()
    r = requests.post(url + "/generic", data=generic, headers=generic_headers(GENERIC_SECRET, generic, now), timeout=10)
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0, "quarantined": 1}, r.text
    mg = ('{"signature":%s,"event-data":{"event":"delivered","id":"mg-deep","x":%s}}'
          % (json.dumps(json.loads(mailgun_body(MAILGUN_KEY, {}, now))["signature"]), _deep(depth))).encode()
    r = requests.post(url + "/mailgun", data=mg, headers=JSON, timeout=10)
    assert r.status_code == 200 and r.json()["quarantined"] == 1, r.text
    assert sorted(e["provider_event_id"] for e in _stored(bus_url)) == [f"g-{depth}", f"ok-{depth}"]
    quarantined = open_quarantine_bus(bus_url)
    try:
        assert {q.event["rule"] for q in quarantined.read(0)} == {"payload.too_deep"}
    finally:
        quarantined.close()
