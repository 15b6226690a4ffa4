"""An unsubscribe or a hard bounce arriving between the fire and the send stops it as it arrives:
the sender reads the e-mail events bus (what the one-click endpoint and the platform webhooks
append) right before each attempt, without waiting for the warehouse to refresh the guard store."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
import requests

from personalization_assets.activation.ratelimit import TokenBucket
from personalization_assets.activation.unsubscribe import create_unsubscribe_app
from personalization_assets.bus import open_bus
from personalization_assets.delivery.channels import SmtpChannel
from personalization_assets.delivery.outbox import Outbox
from personalization_assets.delivery.payloads import PayloadStore
from personalization_assets.delivery.render import Unsubscribe
from personalization_assets.delivery.sender import Sender
from personalization_assets.delivery.suppressions import BusSuppressions
from personalization_assets.email_events.model import Normalized
from personalization_assets.realtime.guards import SqliteGuardProvider
from personalization_assets.webhooks.store import EmailEventStore

from ..asgi import serving
from .peers import SmtpSink, seed

SECRET = "s3cret"
FROM = "Shop <news@shop.example>"


@pytest.fixture
def bus_url(tmp_path):
    return f"sqlite:///{tmp_path / 'email_events.db'}?table=email_events"


@pytest.fixture
def unsubscribe_endpoint(bus_url):
    """The one-click endpoint as deployed (app_from_env's wiring), on a real port."""
    store = EmailEventStore(bus_url)
    with serving(create_unsubscribe_app(SECRET, lambda e: store.append([e], [])), "the unsubscribe endpoint") as port:
        yield f"http://127.0.0.1:{port}/unsubscribe"
    store.close()


def _event(kind: str, email: str, at: datetime, n: int) -> Normalized:
    return Normalized(provider="sendgrid", provider_event_id=f"ev{n}", type=kind, email=email, timestamp=at,
                      bounce_class="hard" if kind == "bounce" else ("soft" if kind == "soft_bounce" else None))


def test_an_unsubscribe_or_hard_bounce_on_the_bus_stops_a_rendered_send(tmp_path, bus_url, unsubscribe_endpoint):
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    seed(tmp_path / "triggers.sqlite", tmp_path / "guard.sqlite", payloads, 5)  # all opted in, in the guard store
    outbox = Outbox(tmp_path / "outbox.sqlite")
    with SmtpSink() as smtp:
        sender = Sender(outbox, tmp_path / "triggers.sqlite", payloads, SqliteGuardProvider(tmp_path / "guard.sqlite"),
                        SmtpChannel("127.0.0.1", smtp.port, FROM, TokenBucket(1000)),
                        Unsubscribe("https://shop.example/unsubscribe", SECRET), rng=random.Random(1),
                        suppressions=BusSuppressions(outbox.conn, bus_url))
        outbox.enqueue(sender.ledger.fires(0, 10), "smtp")
        for row in outbox.queued():
            sender.render(row)
        assert outbox.counts()["rendered"] == 5
        links = dict(outbox.conn.execute("select customer_id, unsubscribe_url from outbox").fetchall())
        # u1 clicks the one-click link of the very e-mail waiting to go (the mailbox provider's POST)
        answer = requests.post(f"{unsubscribe_endpoint}?{urlsplit(links['u1']).query}",
                               data={"List-Unsubscribe": "One-Click"}, timeout=10)
        assert answer.status_code == 200, answer.text
        now = datetime.now(timezone.utc)
        webhooks = EmailEventStore(bus_url)  # what /webhooks/sendgrid appends
        webhooks.append([_event("bounce", "ann2@example.com", now, 1),
                         _event("soft_bounce", "ann3@example.com", now, 2),  # mailbox full: still sendable
                         _event("spamreport", "ANN4@example.com", now, 3),
                         _event("unsubscribe", "ann0@example.com", now - timedelta(minutes=2), 4),
                         _event("group_resubscribe", "ann0@example.com", now - timedelta(minutes=1), 5)], [])
        webhooks.close()
        for _ in range(5):
            sender.step()
        sender.suppressions.close()  # the sender's bus reader (run_sender closes it in service)
        sender.ledger.close()
    states = dict(outbox.conn.execute("select customer_id, state || ':' || coalesce(reason, '') from outbox"))
    assert states == {"u0": "sent:", "u1": "suppressed:unsubscribed (e-mail events bus: one_click)",
                      "u2": "suppressed:bounced (e-mail events bus: sendgrid)", "u3": "sent:",
                      "u4": "suppressed:complained (e-mail events bus: sendgrid)"}, states
    assert sorted(m["To"] for m in smtp.messages) == ["ann0@example.com", "ann3@example.com"]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.sqlite*"))
    assert b"ann2@example.com" in stored  # the rendered row keeps its recipient...
    assert outbox.conn.execute("select count(*) from bus_suppressions where email_sha256 like '%@%'").fetchone() == (0,)
    outbox.close()
    payloads.close()


def test_the_bus_is_read_once_and_never_created(tmp_path, bus_url):
    outbox = Outbox(tmp_path / "outbox.sqlite")
    seen = BusSuppressions(outbox.conn, bus_url)
    assert seen.poll() == 0 and not (tmp_path / "email_events.db").exists()  # no webhook yet: nothing made
    bus = open_bus(bus_url)
    bus.append([{"messageId": f"sendgrid:e{i}", "type": "unsubscribe", "email": f"p{i}@example.com",
                 "provider": "sendgrid", "timestamp": "2026-01-01T00:00:00+00:00"} for i in range(2500)])
    assert seen.poll() == 2500 and seen.cursor() == bus.last_offset()
    assert seen.poll() == 0  # read up to there
    again = BusSuppressions(outbox.conn, bus_url)  # a restarted sender
    assert again.poll() == 0 and again.reason("P7@example.com") == "unsubscribed (e-mail events bus: sendgrid)"
    assert again.reason("someone@example.com") is None
    bus.close()
    seen.close()
    again.close()
