"""Hostile request generators and the invariants they must keep, shared by the in-suite fuzz test
(test_fuzz.py, a few hundred requests) and `python -m bench.fuzz` (10,000 per endpoint).

Endpoints: every collector route (/v1/batch, /v1/import and the six single-event routes), each
webhook (/webhooks/sendgrid, /webhooks/mailgun, /webhooks/generic) and the one-click
/unsubscribe endpoint as deployed (its own uvicorn server writing to the e-mail events bus).

Against these real servers on 127.0.0.1, every request must get:
- never a 5xx (the buses are healthy, so 503 would be a bug too);
- a well-formed request (valid JSON with the right key or signature, whatever its events hold)
  is answered 200: one poison event never costs its batch;
- on 200, accepted + quarantined + duplicates = the events sent;
- every acknowledged event stored once: the bus gains exactly `accepted` records, with distinct
  messageIds, each one of the request's (or a server-assigned `srv-` id); the quarantine gains at
  most `quarantined` records; each messageId the request carried is stored exactly once, on the
  bus or in the quarantine; a refused request stores nothing;
- a Mailgun signature used twice is refused (401) the second time, and stores nothing;
- /unsubscribe: a valid one-click POST is stored once (again: 200, nothing new), anything else
  (GET, bad token, wrong form, oversized body) stores nothing.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
import uvicorn
from hypothesis import strategies as st

from personalization_assets.activation.unsubscribe import create_unsubscribe_app, make_token
from personalization_assets.activation.unsubscribe_token import make_legacy_token
from personalization_assets.bus import open_bus, open_quarantine_bus
from personalization_assets.collector import CollectorSettings
from personalization_assets.collector.server import bind, build_server
from personalization_assets.webhooks.store import EmailEventStore
from personalization_assets.webhooks.verify import sign_generic

from ..webhooks.signing import SendGridKeys, mailgun_body

WRITE_KEY = "fuzz-key"
MAILGUN_KEY = "fuzz-mailgun-key"
GENERIC_SECRET = "fuzz-generic-secret"
UNSUBSCRIBE_SECRET = "fuzz-unsubscribe-secret"
SINGLE = ("/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias")
ENDPOINTS = ("/v1/batch", "/v1/import", *SINGLE, "/webhooks/sendgrid", "/webhooks/mailgun",
             "/webhooks/generic", "/unsubscribe")

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
# Around orjson's (255 to write, 1024 to read) and repr's (~972) limits, and far beyond them.
DEPTHS = [200, 254, 256, 600, 971, 972, 980, 1000, 1022, 1030, 1100, 3000]


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def event_text(draw, mid: str) -> tuple[str, bool]:
    """One event as JSON text, and whether it is a JSON object: mostly event-shaped with hostile
    fields, sometimes deep nesting, a >64-bit integer literal or not an object at all."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        value = draw(json_value)
        return json.dumps(value), isinstance(value, dict)  # not an event
    if kind == 1:  # nesting around and beyond the parsers' limits
        return (f'{{"type":"track","event":"Product Viewed","userId":"u","messageId":"{mid}",'
                f'"properties":{nested(draw(st.sampled_from(DEPTHS)))}}}'), True
    if kind in (5, 6):  # a plausible event (most are accepted), with odd but storable values
        event = {"type": draw(st.sampled_from(["identify", "page", "screen", "group", "alias"])), "messageId": mid,
                 draw(st.sampled_from(["userId", "anonymousId"])): draw(st.text(min_size=1, max_size=12)),
                 "groupId": "g1", "previousId": "p1", "event": draw(st.sampled_from(["Signed Up", "Coupon Used"])),
                 draw(st.sampled_from(["properties", "traits"])): draw(st.dictionaries(
                     st.text(max_size=8), json_value.filter(lambda v: not isinstance(v, int) or abs(v) < 2**63),
                     max_size=4))}
        if draw(st.booleans()):
            when = time.time() - draw(st.integers(0, 86_400 * 365))
            event[draw(st.sampled_from(["timestamp", "originalTimestamp"]))] = \
                time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(when))
        return json.dumps(event), True
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
    return text, True


@dataclass
class Request:
    path: str
    body: bytes
    headers: dict
    sent: int  # events in the request
    ids: set[str] = field(default_factory=set)  # messageIds the request's events carry
    well_formed: bool = False  # valid JSON, right key or signature, right shape: must be 200
    method: str = "POST"
    query: dict = field(default_factory=dict)
    repeat: bool = False  # send twice: the second must store nothing new
    replay_with: bytes | None = None  # Mailgun: the same signature block with other event data
    address: str | None = None  # /unsubscribe: the address a valid token is for


@dataclass
class Outcome:
    """What one request got and did: its status, the events counted in a 200 answer and the
    records the stores gained, and the invariants it broke."""

    status: int
    problems: list[str]
    sent: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    stored: int = 0
    stored_quarantine: int = 0


def _encode(draw, body: bytes, headers: dict) -> tuple[bytes, bool]:
    """The body as sent, and whether the server can decode it."""
    how = draw(st.sampled_from(["plain"] * 6 + ["gzip", "gzip", "truncated", "two_members", "br", "garbage"]))
    if how == "plain":
        return body, True
    headers["Content-Encoding"] = {"br": "br"}.get(how, "gzip")
    packed = gzip.compress(body)
    return {"gzip": packed, "truncated": packed[:-8], "two_members": packed + gzip.compress(b"{}"),
            "br": body, "garbage": body}[how], how == "gzip"


def _auth(draw) -> tuple[dict, bool]:
    how = draw(st.sampled_from(["bearer"] * 8 + ["none", "wrong", "basic_garbage"]))
    return ({"bearer": {"Authorization": f"Bearer {WRITE_KEY}"}, "none": {},
             "wrong": {"Authorization": "Bearer nope"}, "basic_garbage": {"Authorization": "Basic !!!"}}[how],
            how == "bearer")


@st.composite
def batch_request(draw, path: str = "/v1/batch") -> Request:
    tag = uuid.uuid4().hex[:10]
    n = draw(st.integers(0, 12))
    ids = [f"fz-{tag}-{i}" for i in range(n)]
    parts = [draw(event_text(m))[0] for m in ids]
    extra = ""
    if draw(st.booleans()):
        extra += f', "sentAt": {json.dumps(draw(any_time))}'
    if draw(st.integers(0, 3)) == 0:
        extra += f', "context": {json.dumps(draw(json_value))}'
    body = ('{"batch": [' + ",".join(parts) + "]" + extra + "}").encode()
    intact = True
    if draw(st.integers(0, 15)) == 0:
        body, intact = (draw(st.binary(max_size=200)) if draw(st.booleans()) else body[: len(body) // 2]), False
    auth, authorized = _auth(draw)
    headers = {"Content-Type": "application/json", **auth}
    body, decodable = _encode(draw, body, headers)
    carried = {m for m, text in zip(ids, parts) if f'"{m}"' in text}
    return Request(path, body, headers, n, carried, well_formed=intact and authorized and decodable)


@st.composite
def single_request(draw, path: str = "/v1/track") -> Request:
    mid = f"fz-{uuid.uuid4().hex[:10]}"
    text, is_object = draw(event_text(mid))
    auth, authorized = _auth(draw)
    headers = {"Content-Type": "application/json", **auth}
    body, decodable = _encode(draw, text.encode(), headers)
    carried = {mid} if f'"{mid}"' in text else set()
    return Request(path, body, headers, 1, carried, well_formed=is_object and authorized and decodable)


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
        text = text[:-1] + f', "deep": {nested(draw(st.sampled_from([300, 980, 1000, 1030, 3000])))}}}'
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
            signature = json.dumps(envelope["signature"])
            body = ('{"signature": ' + signature + ', "event-data": ' + text + "}").encode()
        else:
            signature = '{"timestamp": "nan", "token": "t", "signature": "s"}'
            body = ('{"signature": ' + signature + ', "event-data": ' + text + "}").encode()
        replay = None
        if signed and draw(st.integers(0, 4)) == 0:  # the captured signature, carrying a forged bounce
            forged = json.dumps({"event": "failed", "severity": "permanent", "id": f"{tag}-forged",
                                 "recipient": "victim@example.com", "timestamp": now})
            replay = ('{"signature": ' + signature + ', "event-data": ' + forged + "}").encode()
        carried = {f"{tag}-0"} if f'"{tag}-0"' in text else set()
        return Request(f"/webhooks/{provider}", body, {"Content-Type": "application/json"}, 1, carried,
                       well_formed=signed, replay_with=replay)
    n = draw(st.integers(0, 8))
    parts = [_provider_event(draw, provider, i, tag) for i in range(n)]
    events = "[" + ",".join(parts) + "]"
    body = (events if provider == "sendgrid" else '{"events": ' + events + "}").encode()
    stamp = str(now) if signed else draw(st.sampled_from(["NaN", "inf", "", "abc", str(now - 10_000)]))
    if provider == "sendgrid":
        headers = sendgrid_keys.headers(body, stamp) if stamp.lstrip("-").isdigit() else \
            {"X-Twilio-Email-Event-Webhook-Timestamp": stamp, "X-Twilio-Email-Event-Webhook-Signature": "AAAA"}
    else:
        headers = {"X-Webhook-Timestamp": stamp, "X-Webhook-Signature": sign_generic(GENERIC_SECRET, body, stamp)}
    carried = {f"{tag}-{i}" for i, text in enumerate(parts) if f'"{tag}-{i}"' in text}
    return Request(f"/webhooks/{provider}", body, {"Content-Type": "application/json", **headers}, n, carried,
                   well_formed=signed)


def _multipart(fields: list[tuple[str, str]], boundary: str) -> bytes:
    parts = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields)
    return f"{parts}--{boundary}--\r\n".encode()


# A form field's name as a client writes it into its part's header: no CR, LF or bare quote (HTML
# forms escape those); a name with them makes the multipart body itself malformed (400 is right).
FIELD_NAME = st.text(st.characters(exclude_characters='\r\n"\\', exclude_categories=("Cs",)), max_size=10)
UNSUBSCRIBE_TYPES = [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                     "multipart/form-data; boundary=b", "multipart/form-data; boundary=",
                     "application/json", 'multipart/form-data; boundary="q"; charset=latin-1']


@st.composite
def unsubscribe_request(draw) -> Request:
    """A one-click POST (or GET) as a mailbox provider, a link scanner or an attacker sends it."""
    address = f"fz-{uuid.uuid4().hex[:12]}@example.com"
    valid = make_token(UNSUBSCRIBE_SECRET, address)
    how = draw(st.sampled_from(["valid"] * 6 + ["legacy", "tampered", "foreign", "text", "empty", "long"]))
    token = {"valid": valid, "legacy": make_legacy_token(UNSUBSCRIBE_SECRET, address),
             "tampered": valid[:-3] + ("AAA" if not valid.endswith("AAA") else "BBB"),
             "foreign": make_token("another-secret", address), "empty": "", "long": valid * 20}.get(how)
    if token is None:
        token = draw(st.text(max_size=80))
    body_kind = draw(st.sampled_from(["urlencoded"] * 3 + ["multipart"] * 3 + ["bare", "extra_fields",
                                      "random", "wrong_value", "big", "none"]))
    boundary = "----fz" + uuid.uuid4().hex[:8]
    content_type = {"urlencoded": "application/x-www-form-urlencoded", "bare": None,
                    "multipart": f"multipart/form-data; boundary={boundary}",
                    "extra_fields": f"multipart/form-data; boundary={boundary}",
                    "big": "application/x-www-form-urlencoded"}.get(body_kind, "")
    if content_type == "":
        content_type = draw(st.sampled_from(UNSUBSCRIBE_TYPES))
    body = {"urlencoded": b"List-Unsubscribe=One-Click", "bare": b"List-Unsubscribe=One-Click",
            "multipart": _multipart([("List-Unsubscribe", "One-Click")], boundary),
            "extra_fields": _multipart([(draw(FIELD_NAME), draw(st.text(max_size=20))),
                                        ("List-Unsubscribe", "One-Click")], boundary),
            "wrong_value": b"List-Unsubscribe=" + draw(st.text(max_size=20)).encode("utf-8", "surrogatepass"),
            "big": b"List-Unsubscribe=One-Click&pad=" + b"x" * draw(st.integers(9 * 1024, 300 * 1024)),
            "none": b""}.get(body_kind)
    if body is None:
        body = draw(st.binary(max_size=600))
    method = "GET" if draw(st.integers(0, 9)) == 0 else "POST"
    headers = {"Content-Type": content_type} if content_type else {}
    one_click = body_kind in ("urlencoded", "multipart", "extra_fields", "bare")
    return Request("/unsubscribe", body, headers, int(method == "POST"),
                   well_formed=how in ("valid", "legacy") and (one_click or method == "GET"),
                   method=method, query={"t": token}, repeat=draw(st.integers(0, 4)) == 0,
                   address=address if how in ("valid", "legacy") else None)


# --- the running targets ----------------------------------------------------------------------
def _serve(app, sock: socket.socket, **config) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, thread


class Target:
    """A real collector (uvicorn on 127.0.0.1, production server setup) with all webhooks, and the
    one-click unsubscribe endpoint as deployed (plain uvicorn, the e-mail events store)."""

    def __init__(self, workdir: Path) -> None:
        self.sendgrid_keys = SendGridKeys()
        self.bus_url = f"sqlite:///{workdir}/events.db"
        self.email_bus_url = f"sqlite:///{workdir}/email_events.db?table=email_events"
        self.unsub_bus_url = f"sqlite:///{workdir}/unsubscribe/email_events.db?table=email_events"
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
        self.unsub_store = EmailEventStore(self.unsub_bus_url)
        store = self.unsub_store  # as app_from_env wires it
        unsub_sock = bind("127.0.0.1", 0)
        self.unsub_server, self.unsub_thread = _serve(
            create_unsubscribe_app(UNSUBSCRIBE_SECRET, lambda event: store.append([event], [])), unsub_sock)
        self.unsub_url = f"http://127.0.0.1:{unsub_sock.getsockname()[1]}"
        self.session = requests.Session()
        self.buses = {"bus": open_bus(self.bus_url), "quarantine": open_quarantine_bus(self.bus_url),
                      "email": open_bus(self.email_bus_url),
                      "email_quarantine": open_quarantine_bus(self.email_bus_url)}
        self.offsets = {name: 0 for name in self.buses}
        self.unsub_bus = None  # created by the endpoint's first append
        self.unsub_offset = 0

    def strategy(self, endpoint: str):
        if endpoint in ("/v1/batch", "/v1/import"):
            return batch_request(endpoint)
        if endpoint in SINGLE:
            return single_request(endpoint)
        if endpoint == "/unsubscribe":
            return unsubscribe_request()
        return webhook_request(endpoint.rsplit("/", 1)[1], self.sendgrid_keys)

    def _new(self, name: str) -> list:
        records = self.buses[name].read(self.offsets[name], limit=100_000)
        if records:
            self.offsets[name] = records[-1].offset
        return records

    def check(self, req: Request) -> Outcome:
        """Send `req`; its outcome, with the invariants it broke."""
        if req.path == "/unsubscribe":
            return self._check_unsubscribe(req)
        r = self.session.post(self.url + req.path, data=req.body, headers=req.headers, timeout=60)
        out = Outcome(r.status_code, [])
        if r.status_code >= 500:
            out.problems.append(f"{r.status_code} {r.text[:200]}")
        if req.well_formed and r.status_code != 200:
            out.problems.append(f"a well-formed request was refused: {r.status_code} {r.text[:200]}")
        email = req.path.startswith("/webhooks/")
        stored = self._new("email" if email else "bus")
        quarantined = self._new("email_quarantine" if email else "quarantine")
        out.stored, out.stored_quarantine = len(stored), len(quarantined)
        if r.status_code == 200:
            body = r.json()
            out.sent = req.sent
            out.accepted, out.quarantined, out.duplicates = body["accepted"], body["quarantined"], body["duplicates"]
            counted = out.accepted + out.quarantined + out.duplicates
            if counted != req.sent:
                out.problems.append(f"accepted+quarantined+duplicates = {counted}, sent {req.sent}: {body}")
            ids = [rec.message_id for rec in stored]
            if len(ids) != out.accepted or len(set(ids)) != len(ids):
                out.problems.append(f"{out.accepted} acknowledged, {len(ids)} stored ({len(set(ids))} distinct)")
            if len(quarantined) > out.quarantined:
                out.problems.append(f"{out.quarantined} quarantined, {len(quarantined)} quarantine records")
            prefix = "" if not email else req.path.rsplit("/", 1)[1] + ":"
            foreign = [i for i in ids if i.removeprefix(prefix) not in req.ids and not i.startswith("srv-")]
            if foreign:
                out.problems.append(f"stored ids not from this request: {foreign[:3]}")
            kept = [i.removeprefix(prefix) for i in ids]
            kept += [str(q.event.get("record_id") if email else q.message_id).removeprefix(prefix)
                     for q in quarantined]
            lost = [i for i in req.ids if kept.count(i) != 1]
            if lost:
                out.problems.append(f"sent ids not stored exactly once (bus or quarantine): {lost[:3]}")
        elif stored or quarantined:
            out.problems.append(f"{r.status_code} but {len(stored)} events, {len(quarantined)} quarantined stored")
        if not email:  # an event quarantined as internal_error is a collector bug, even without a 500
            bugs = [q.event["message"] for q in quarantined if q.event.get("rule") == "internal_error"]
            if bugs:
                out.problems.append(f"{len(bugs)} events quarantined as internal_error")
        if req.replay_with is not None and r.status_code == 200:
            again = self.session.post(self.url + req.path, data=req.replay_with, headers=req.headers, timeout=60)
            leaked = self._new("email") + self._new("email_quarantine")
            if again.status_code != 401 or leaked:
                out.problems.append(f"a replayed Mailgun signature got {again.status_code}, {len(leaked)} stored")
        return out

    def _unsub_new(self) -> list:
        if self.unsub_bus is None:
            path = Path(self.unsub_bus_url.split("sqlite:///", 1)[1].split("?", 1)[0])
            if not path.exists():
                return []
            self.unsub_bus = open_bus(self.unsub_bus_url)
        records = self.unsub_bus.read(self.unsub_offset, limit=100_000)
        if records:
            self.unsub_offset = records[-1].offset
        return records

    def _check_unsubscribe(self, req: Request) -> Outcome:
        answers = []
        for _ in range(2 if req.repeat else 1):
            r = self.session.request(req.method, self.unsub_url + req.path, params=req.query, data=req.body,
                                     headers=req.headers, timeout=60)
            answers.append((r.status_code, r.text[:200], self._unsub_new()))
        status = answers[0][0]
        out = Outcome(status, [], sent=req.sent)
        for i, (code, text, stored) in enumerate(answers):
            if code >= 500:
                out.problems.append(f"{code} {text}")
            if code not in (200, 400, 405, 413):
                out.problems.append(f"unexpected status {code}: {text}")
            if req.well_formed and code != 200:
                out.problems.append(f"a valid one-click request was refused: {code} {text}")
            expect = int(code == 200 and req.method == "POST" and i == 0)
            if len(stored) != expect:
                out.problems.append(f"answer {i + 1} ({req.method} {code}) stored {len(stored)}, expected {expect}")
            if stored and [s.event.get("email") for s in stored] != [req.address]:
                out.problems.append(f"stored an unsubscribe for {[s.event.get('email') for s in stored]}")
            if code == 200 and req.method == "POST":
                out.accepted += i == 0
                out.duplicates += i > 0
            out.stored += len(stored)
        out.sent = out.accepted + out.duplicates
        return out

    def close(self) -> None:
        for server in (self.server, self.unsub_server):
            server.should_exit = True
        self.thread.join(15)
        self.unsub_thread.join(15)
        for bus in self.buses.values():
            bus.close()
        if self.unsub_bus is not None:
            self.unsub_bus.close()
        self.unsub_store.close()
