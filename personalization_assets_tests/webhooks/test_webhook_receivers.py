"""Webhook receivers on a real collector over loopback, with requests signed as each provider does."""

from __future__ import annotations

import json
import time

import pytest
import requests
from prometheus_client import REGISTRY

from personalization_assets.bus import open_bus, open_quarantine_bus
from personalization_assets.collector import CollectorSettings, create_app
from personalization_assets_tests.webhooks.signing import (
    SendGridKeys, generic_headers, mailgun_body, sendgrid_events,
)

from ..asgi import serving

MAILGUN_KEY = "key-mailgun-signing-0123456789"
GENERIC_SECRET = "generic-shared-secret"


class Service:
    def __init__(self, url: str, email_bus_url: str):
        self.url, self.email_bus_url = url, email_bus_url

    def stored(self) -> list[dict]:
        bus = open_bus(self.email_bus_url)
        try:
            return [r.event for r in bus.read(0, limit=10_000)]
        finally:
            bus.close()

    def quarantined(self) -> list[dict]:
        bus = open_quarantine_bus(self.email_bus_url)
        try:
            return [r.event for r in bus.read(0, limit=10_000)]
        finally:
            bus.close()


@pytest.fixture(scope="module")
def sendgrid_keys():
    return SendGridKeys()


@pytest.fixture
def service(tmp_path, sendgrid_keys):
    email_bus = f"sqlite:///{tmp_path}/email_events.db?table=email_events"
    settings = CollectorSettings(bus_url=f"sqlite:///{tmp_path}/events.db", webhooks={
        "bus_url": email_bus, "max_body_bytes": 256 * 1024, "tolerance_s": 300,
        "sendgrid": {"public_key": sendgrid_keys.public_key}, "mailgun": {"signing_key": MAILGUN_KEY},
        "generic": {"secret": GENERIC_SECRET}})
    with serving(create_app(settings), "the collector") as port:
        yield Service(f"http://127.0.0.1:{port}", email_bus)


def post_sendgrid(service, keys, events, ts=None, headers=None):
    body = json.dumps(events).encode()
    ts = int(time.time()) if ts is None else ts
    return requests.post(service.url + "/webhooks/sendgrid", data=body, timeout=10,
                         headers=headers if headers is not None else keys.headers(body, ts))


def test_sendgrid_batch_is_verified_normalized_and_stored_apart_from_behavioural_events(service, sendgrid_keys, tmp_path):
    now = int(time.time())
    events = sendgrid_events(now) + [{"event": "weird_new_type", "email": "a@b.io", "timestamp": now, "sg_event_id": "sg-x"}]
    before = REGISTRY.get_sample_value("collector_webhook_events_total", {"provider": "sendgrid", "outcome": "accepted"}) or 0
    r = post_sendgrid(service, sendgrid_keys, events)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 12, "duplicates": 0, "quarantined": 1}
    stored = {e["provider_event_id"]: e for e in service.stored()}
    assert [stored[f"sg-evt-{i}"]["type"] for i in range(12)] == [
        "processed", "delivered", "open", "open", "click", "bounce", "soft_bounce", "deferred",
        "dropped", "spamreport", "unsubscribe", "group_unsubscribe"]
    first = stored["sg-evt-0"]
    assert first["messageId"] == "sendgrid:sg-evt-0" and first["email"] == "alice.smith@example.com"
    assert first["customer_key"] == "cust-1" and first["timestamp"].endswith("+00:00")
    assert json.loads(first["raw_payload"])["sg_event_id"] == "sg-evt-0"
    assert [stored[f"sg-evt-{i}"]["is_machine"] for i in (2, 3)] == [False, True]
    assert stored["sg-evt-4"]["url"] == "https://shop.example.com/p/42"
    assert (stored["sg-evt-5"]["bounce_class"], stored["sg-evt-6"]["bounce_class"]) == ("hard", "soft")
    [q] = service.quarantined()
    assert q["rule"] == "type.unknown" and "weird_new_type" in q["message"] and q["record_id"] == "sendgrid:sg-x"
    behavioural = open_bus(f"sqlite:///{tmp_path}/events.db")
    assert behavioural.last_offset() == 0  # e-mail events never mix with behavioural ones
    behavioural.close()
    after = REGISTRY.get_sample_value("collector_webhook_events_total", {"provider": "sendgrid", "outcome": "accepted"})
    assert after - before == 12


def test_the_same_webhook_delivered_three_times_is_stored_once(service, sendgrid_keys):
    events = sendgrid_events(int(time.time()))[:3]
    answers = [post_sendgrid(service, sendgrid_keys, events).json() for _ in range(3)]
    assert [a["accepted"] for a in answers] == [3, 0, 0]
    assert [a["duplicates"] for a in answers] == [0, 3, 3]
    assert sorted(e["provider_event_id"] for e in service.stored()) == ["sg-evt-0", "sg-evt-1", "sg-evt-2"]


def test_forged_unsigned_tampered_and_replayed_sendgrid_requests_get_401_and_store_nothing(service, sendgrid_keys):
    events = sendgrid_events(int(time.time()))[:2]
    body = json.dumps(events).encode()
    now = int(time.time())
    forged = SendGridKeys().headers(body, now)  # a valid signature by someone else's key
    assert post_sendgrid(service, sendgrid_keys, events, headers=forged).status_code == 401
    assert post_sendgrid(service, sendgrid_keys, events, headers={"Content-Type": "application/json"}).status_code == 401
    tampered = sendgrid_keys.headers(body, now)
    evil = json.dumps(events + [{"event": "unsubscribe", "email": "ceo@x.io", "timestamp": now, "sg_event_id": "z"}]).encode()
    assert requests.post(service.url + "/webhooks/sendgrid", data=evil, headers=tampered, timeout=10).status_code == 401
    garbage = {**tampered, "X-Twilio-Email-Event-Webhook-Signature": "%%not-base64%%"}
    assert requests.post(service.url + "/webhooks/sendgrid", data=body, headers=garbage, timeout=10).status_code == 401
    stale = post_sendgrid(service, sendgrid_keys, events, ts=now - 600)  # correctly signed, 10 min old
    assert stale.status_code == 401 and stale.json()["code"] == "stale_timestamp"
    future = post_sendgrid(service, sendgrid_keys, events, ts=now + 600)
    assert future.status_code == 401
    assert service.stored() == [] and service.quarantined() == []


def test_oversize_body_is_rejected_before_anything_is_stored(service, sendgrid_keys):
    now = int(time.time())
    big = [{"event": "delivered", "email": f"u{i}@example.com", "timestamp": now, "sg_event_id": f"b{i}",
            "padding": "x" * 300} for i in range(1000)]
    r = post_sendgrid(service, sendgrid_keys, big)
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    assert service.stored() == []


def _mailgun_event(i: int, now: int, **extra) -> dict:
    return {"event": "delivered", "id": f"mg-{i}", "timestamp": now - 5.25, "recipient": "Bob@Example.org",
            "message": {"headers": {"message-id": "20260101.1@mg.example.com"}},
            "user-variables": {"customer_key": "cust-9"}, **extra}


def test_mailgun_signed_events_are_stored_and_forged_or_replayed_ones_are_refused(service):
    now = int(time.time())
    url = service.url + "/webhooks/mailgun"
    ok = [mailgun_body(MAILGUN_KEY, _mailgun_event(1, now), now),
          mailgun_body(MAILGUN_KEY, _mailgun_event(2, now, event="failed", severity="permanent"), now),
          mailgun_body(MAILGUN_KEY, _mailgun_event(3, now, event="failed", severity="temporary"), now),
          mailgun_body(MAILGUN_KEY, _mailgun_event(4, now, event="opened", **{"client-info": {"bot": "apple"}}), now),
          mailgun_body(MAILGUN_KEY, _mailgun_event(5, now, event="complained"), now)]
    for body in ok:
        assert requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10).status_code == 200
    replayed = requests.post(url, data=ok[0], headers={"Content-Type": "application/json"}, timeout=10)
    assert replayed.status_code == 401 and replayed.json()["code"] == "replayed"  # its token was used
    stored = {e["provider_event_id"]: e for e in service.stored()}
    assert {k: (v["type"], v["is_machine"]) for k, v in stored.items()} == {
        "mg-1": ("delivered", False), "mg-2": ("bounce", False), "mg-3": ("soft_bounce", False),
        "mg-4": ("open", True), "mg-5": ("spamreport", False)}
    assert stored["mg-1"]["email"] == "bob@example.org" and stored["mg-1"]["customer_key"] == "cust-9"
    assert stored["mg-1"]["message_id"] == "20260101.1@mg.example.com"

    forged = mailgun_body("wrong-key", _mailgun_event(9, now), now)
    stale = mailgun_body(MAILGUN_KEY, _mailgun_event(10, now), now - 3600)
    unsigned = json.dumps({"event-data": _mailgun_event(11, now)}).encode()
    for body in (forged, stale, unsigned, b"not json at all"):
        r = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code in (400, 401), r.text
    assert len(service.stored()) == 5


def test_generic_hmac_webhook(service):
    now = int(time.time())
    url = service.url + "/webhooks/generic"
    body = json.dumps({"events": [
        {"id": "g1", "type": "click", "email": "c@example.net", "timestamp": "2026-01-02T10:00:00+01:00",
         "url": "https://x.example/a", "is_machine": True, "campaign_id": "spring"},
        {"id": "g2", "type": "bounce", "bounce_class": "soft", "email": "c@example.net", "timestamp": now},
        {"id": "g3", "type": "teleported", "email": "c@example.net", "timestamp": now},
        {"id": "g4", "type": "open", "email": "not-an-email", "timestamp": now}]}).encode()
    r = requests.post(url, data=body, headers=generic_headers(GENERIC_SECRET, body, now), timeout=10)
    assert r.json() == {"accepted": 2, "duplicates": 0, "quarantined": 2}
    stored = {e["provider_event_id"]: e for e in service.stored()}
    assert stored["g1"]["timestamp"] == "2026-01-02T09:00:00+00:00" and stored["g1"]["is_machine"] is True
    assert stored["g2"]["type"] == "soft_bounce"
    assert sorted(q["rule"] for q in service.quarantined()) == ["email.invalid", "type.unknown"]
    bad = requests.post(url, data=body, headers=generic_headers("guess", body, now), timeout=10)
    assert bad.status_code == 401
    old = requests.post(url, data=body, headers=generic_headers(GENERIC_SECRET, body, now - 301), timeout=10)
    assert old.status_code == 401 and len(service.stored()) == 2


def test_unconfigured_provider_has_no_endpoint(tmp_path):
    from personalization_assets.webhooks import create_webhook_app

    with serving(create_webhook_app(None, {"bus_url": f"sqlite:///{tmp_path}/e.db", "generic": {"secret": "s"}})) as port:
        url = f"http://127.0.0.1:{port}"
        assert requests.post(url + "/sendgrid", data=b"[]", timeout=5).status_code == 404
        assert requests.post(url + "/generic", data=b"[]", timeout=5).status_code == 401
