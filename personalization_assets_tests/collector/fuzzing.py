"""Hostile request generators and the invariants they must keep, shared by the in-suite fuzz test
(test_fuzz.py, a few hundred requests) and `python -m bench.fuzz` (10,000 per endpoint).

Against a real collector (uvicorn on 127.0.0.1, webhooks mounted), every request must get:
- never a 5xx (the bus is healthy, so 503 would be a bug too);
- on 200, accepted + quarantined + duplicates = the events sent;
- every acknowledged event stored once: the bus gains exactly `accepted` records, with distinct
  messageIds, each one of the request's (or a server-assigned `srv-` id).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
from hypothesis import strategies as st

from personalization_assets.bus import open_bus, open_quarantine_bus
from personalization_assets.collector import CollectorSettings
from personalization_assets.collector.server import bind, build_server
from personalization_assets.webhooks.verify import sign_generic

from ..webhooks.signing import SendGridKeys, mailgun_body

WRITE_KEY = "fuzz-key"
MAILGUN_KEY = "fuzz-mailgun-key"
GENERIC_SECRET = "fuzz-generic-secret"
ENDPOINTS = ("/v1/batch", "/v1/track", "/webhooks/sendgrid", "/webhooks/mailgun", "/webhooks/generic")

# --- values -----------------------------------------------------------------------------------
leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=12)
        | st.floats(allow_nan=False, allow_infinity=False))
json_value = st.recursive(leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                          max_leaves=12)
odd_times = st.sampled_from([
    "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z",
    "2300-01-01T00:00:00Z", "NaN", "nan", "inf", "", "yesterday", "2026-02-30T00:00:00Z", "1700000000",
    "2026-01-01T00:00:00", "2026-01-01T00:00:00.123456+14:00", "-1", "1e999"])
any_time = odd_times | st.datetimes().map(lambda d: d.isoformat()) | leaf
TYPES = ["track", "identify", "page", "screen", "group", "alias", "Track", "", "x"]
NAMES = ["Product Viewed", "Product Added", "Order Completed", "Checkout Started", "Cart Viewed", "", "?"]


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def event_text(draw, mid: str) -> str:
    """One event of a batch as JSON text: mostly event-shaped with hostile fields, sometimes deep
    nesting, a >64-bit integer literal or not an object at all."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return json.dumps(draw(json_value))  # not an event
    if kind == 1:  # nesting around orjson's and repr's limits
        return (f'{{"type":"track","event":"Product Viewed","userId":"u","messageId":"{mid}",'
                f'"properties":{nested(draw(st.sampled_from([200, 254, 256, 600, 971, 972, 980, 1000])))}}}')
    event = {"type": draw(st.sampled_from(TYPES)), "messageId": mid}
    if draw(st.booleans()):
        event["event"] = draw(st.sampled_from(NAMES) | st.text(max_size=8))
    who = draw(st.sampled_from(["userId", "anonymousId", "both", "neither"]))
    for key in (("userId", "anonymousId") if who == "both" else (who,) if who != "neither" else ()):
        event[key] = draw(st.text(min_size=1, max_size=8) | leaf)
    for key in ("timestamp", "originalTimestamp", "sentAt"):
        if draw(st.integers(0, 2)) == 0:
            event[key] = draw(any_time)
    for key in ("properties", "context", "traits", "integrations"):
        if draw(st.integers(0, 2)) == 0:
            event[key] = draw(json_value)
    if kind == 2:
        event["previousId"] = draw(leaf)
        event["groupId"] = draw(leaf)
    text = json.dumps(event)
    if kind == 3:  # an integer beyond 64 bits, as a literal
        text = text[:-1] + f', "big": {draw(st.integers(2**64, 2**90))}}}'
    if kind == 4:
        del event["messageId"]
        text = json.dumps(event)
    return text


@dataclass
class Request:
    path: str
    body: bytes
    headers: dict
    sent: int  # events in the request
    ids: set[str] = field(default_factory=set)


def _encode(draw, body: bytes, headers: dict) -> bytes:
    how = draw(st.sampled_from(["plain"] * 6 + ["gzip", "gzip", "truncated", "two_members", "br", "garbage"]))
    if how == "plain":
        return body
    headers["Content-Encoding"] = {"br": "br"}.get(how, "gzip")
    packed = gzip.compress(body)
    return {"gzip": packed, "truncated": packed[:-8], "two_members": packed + gzip.compress(b"{}"),
            "br": body, "garbage": body}[how]


def _auth(draw) -> dict:
    how = draw(st.sampled_from(["bearer"] * 8 + ["none", "wrong", "basic_garbage"]))
    return {"bearer": {"Authorization": f"Bearer {WRITE_KEY}"}, "none": {},
            "wrong": {"Authorization": "Bearer nope"}, "basic_garbage": {"Authorization": "Basic !!!"}}[how]


@st.composite
def batch_request(draw) -> Request:
    tag = uuid.uuid4().hex[:10]
    n = draw(st.integers(0, 12))
    ids = [f"fz-{tag}-{i}" for i in range(n)]
    parts = [draw(event_text(m)) for m in ids]
    extra = ""
    if draw(st.booleans()):
        extra += f', "sentAt": {json.dumps(draw(any_time))}'
    if draw(st.integers(0, 3)) == 0:
        extra += f', "context": {json.dumps(draw(json_value))}'
    body = ('{"batch": [' + ",".join(parts) + "]" + extra + "}").encode()
    if draw(st.integers(0, 15)) == 0:
        body = draw(st.binary(max_size=200)) if draw(st.booleans()) else body[: len(body) // 2]
    headers = {"Content-Type": "application/json", **_auth(draw)}
    return Request("/v1/batch", _encode(draw, body, headers), headers, n, set(ids))


@st.composite
def single_request(draw) -> Request:
    mid = f"fz-{uuid.uuid4().hex[:10]}"
    text = draw(event_text(mid))
    path = draw(st.sampled_from(["/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias"]))
    headers = {"Content-Type": "application/json", **_auth(draw)}
    return Request(path, _encode(draw, text.encode(), headers), headers, 1, {mid})


def _provider_event(draw, provider: str, i: int, tag: str) -> str:
    if draw(st.integers(0, 7)) == 0:
        return json.dumps(draw(json_value))
    kinds = {"sendgrid": ["delivered", "open", "click", "bounce", "spamreport", "weird"],
             "mailgun": ["delivered", "opened", "failed", "complained", "weird"],
             "generic": ["delivered", "open", "bounce", "unsubscribe", "weird"]}[provider]
    ev = {"sendgrid": "event", "mailgun": "event", "generic": "type"}[provider]
    idk = {"sendgrid": "sg_event_id", "mailgun": "id", "generic": "id"}[provider]
    mail = {"sendgrid": "email", "mailgun": "recipient", "generic": "email"}[provider]
    event = {ev: draw(st.sampled_from(kinds)), idk: f"{tag}-{i}",
             mail: draw(st.sampled_from(["a@example.com", "not-an-email", ""]) | st.text(max_size=10)),
             "timestamp": draw(st.integers(-10, 2**40) | any_time)}
    for key in ("customer_key", "url", "severity", "type", "bounce_class", "user-variables"):
        if draw(st.integers(0, 3)) == 0:
            event[key] = draw(json_value)
    text = json.dumps(event)
    if draw(st.integers(0, 9)) == 0:
        text = text[:-1] + f', "deep": {nested(draw(st.sampled_from([300, 980, 1000])))}}}'
    if draw(st.integers(0, 9)) == 0:
        text = text[:-1] + f', "big": {draw(st.integers(2**64, 2**90))}}}'
    return text


@st.composite
def webhook_request(draw, provider: str, sendgrid_keys: SendGridKeys) -> Request:
    tag = uuid.uuid4().hex[:10]
    now = int(time.time())
    signed = draw(st.integers(0, 9)) > 0
    if provider == "mailgun":
        text = _provider_event(draw, provider, 0, tag)
        if signed:
            envelope = json.loads(mailgun_body(MAILGUN_KEY, {}, now))
            body = ('{"signature": ' + json.dumps(envelope["signature"]) + ', "event-data": ' + text + "}").encode()
        else:
            body = ('{"signature": {"timestamp": "nan", "token": "t", "signature": "s"}, "event-data": '
                    + text + "}").encode()
        return Request(f"/webhooks/{provider}", body, {"Content-Type": "application/json"}, 1, {f"{tag}-0"})
    n = draw(st.integers(0, 8))
    events = "[" + ",".join(_provider_event(draw, provider, i, tag) for i in range(n)) + "]"
    body = (events if provider == "sendgrid" else '{"events": ' + events + "}").encode()
    stamp = str(now) if signed else draw(st.sampled_from(["NaN", "inf", "", "abc", str(now - 10_000)]))
    if provider == "sendgrid":
        headers = sendgrid_keys.headers(body, stamp) if stamp.lstrip("-").isdigit() else \
            {"X-Twilio-Email-Event-Webhook-Timestamp": stamp, "X-Twilio-Email-Event-Webhook-Signature": "AAAA"}
    else:
        headers = {"X-Webhook-Timestamp": stamp, "X-Webhook-Signature": sign_generic(GENERIC_SECRET, body, stamp)}
    return Request(f"/webhooks/{provider}", body, {"Content-Type": "application/json", **headers}, n,
                   {f"{tag}-{i}" for i in range(n)})


# --- the running target -----------------------------------------------------------------------
class Target:
    """A real collector (uvicorn on 127.0.0.1, production server setup) with all webhooks."""

    def __init__(self, workdir: Path) -> None:
        self.sendgrid_keys = SendGridKeys()
        self.bus_url = f"sqlite:///{workdir}/events.db"
        self.email_bus_url = f"sqlite:///{workdir}/email_events.db?table=email_events"
        settings = CollectorSettings(bus_url=self.bus_url, write_keys=frozenset({WRITE_KEY}), webhooks={
            "bus_url": self.email_bus_url, "sendgrid": {"public_key": self.sendgrid_keys.public_key},
            "mailgun": {"signing_key": MAILGUN_KEY}, "generic": {"secret": GENERIC_SECRET}})
        public, admin = bind("127.0.0.1", 0), bind("127.0.0.1", 0)
        self.server = build_server(settings, public, admin)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": self.server.collector_sockets},
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{public.getsockname()[1]}"
        admin_url = f"http://127.0.0.1:{admin.getsockname()[1]}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if requests.get(admin_url + "/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        self.session = requests.Session()
        self.bus, self.email_bus = open_bus(self.bus_url), open_bus(self.email_bus_url)
        self.quarantine = open_quarantine_bus(self.bus_url)
        self.offsets = {"bus": 0, "email": 0, "quarantine": 0}

    def strategy(self, endpoint: str):
        if endpoint == "/v1/batch":
            return batch_request()
        if endpoint == "/v1/track":
            return single_request()
        return webhook_request(endpoint.rsplit("/", 1)[1], self.sendgrid_keys)

    def _new(self, name: str, bus) -> list:
        records = bus.read(self.offsets[name], limit=100_000)
        if records:
            self.offsets[name] = records[-1].offset
        return records

    def check(self, req: Request) -> tuple[int, list[str]]:
        """Send `req`; (status, the invariants it broke)."""
        r = self.session.post(self.url + req.path, data=req.body, headers=req.headers, timeout=60)
        problems = []
        if r.status_code >= 500:
            problems.append(f"{r.status_code} {r.text[:200]}")
        email = req.path.startswith("/webhooks/")
        stored = self._new("email" if email else "bus", self.email_bus if email else self.bus)
        if r.status_code == 200:
            body = r.json()
            counted = body["accepted"] + body["quarantined"] + body["duplicates"]
            if counted != req.sent:
                problems.append(f"accepted+quarantined+duplicates = {counted}, sent {req.sent}: {body}")
            ids = [rec.message_id for rec in stored]
            if len(ids) != body["accepted"] or len(set(ids)) != len(ids):
                problems.append(f"{body['accepted']} acknowledged, {len(ids)} stored ({len(set(ids))} distinct)")
            prefix = "" if not email else req.path.rsplit("/", 1)[1] + ":"
            foreign = [i for i in ids if i.removeprefix(prefix) not in req.ids and not i.startswith("srv-")]
            if foreign:
                problems.append(f"stored ids not from this request: {foreign[:3]}")
        elif stored:
            problems.append(f"{r.status_code} but {len(stored)} events stored")
        if not email:  # an event quarantined as internal_error is a collector bug, even without a 500
            bugs = [q.event["message"] for q in self._new("quarantine", self.quarantine)
                    if q.event.get("rule") == "internal_error"]
            if bugs:
                problems.append(f"{len(bugs)} events quarantined as internal_error")
        return r.status_code, problems

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.bus.close()
        self.email_bus.close()
        self.quarantine.close()
