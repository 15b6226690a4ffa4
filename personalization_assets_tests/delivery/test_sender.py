"""The sender in-process against real peers: rendering, the last-moment check, retries, 429."""

import random

import pytest

from personalization_assets.activation.destinations.smtp import message_id
from personalization_assets.activation.ratelimit import TokenBucket
from personalization_assets.delivery.channels import SmtpChannel, WebhookChannel
from personalization_assets.delivery.outbox import Outbox, idempotency_key, stats
from personalization_assets.delivery.payloads import PayloadStore
from personalization_assets.delivery.render import Unsubscribe
from personalization_assets.delivery.sender import RetryPolicy, Sender
from personalization_assets.realtime.guards import SqliteGuardProvider

from .peers import EspServer, SmtpSink, seed

UNSUB = Unsubscribe("https://shop.example/unsubscribe", "s3cret")
FROM = "Shop <news@shop.example>"


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "triggers.sqlite", tmp_path / "guard.sqlite", tmp_path / "outbox.sqlite"


def make_sender(paths, channel, payloads, **kw):
    ledger, guard, outbox = paths
    return Sender(Outbox(outbox), ledger, payloads, SqliteGuardProvider(guard), channel, UNSUB,
                  rng=random.Random(1), **kw)


def drain(sender, rounds=200):
    for _ in range(rounds):
        sender.step()
        if sum(sender.outbox.counts()[s] for s in ("queued", "rendered", "sending")) == 0:
            return
    raise AssertionError(f"not drained: {sender.outbox.counts()}")


def test_smtp_sends_rendered_mail_once_with_message_id_from_fire_key(paths, tmp_path):
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    keys = seed(paths[0], paths[1], payloads, 12, unsubscribed={3}, purchased={5})
    with SmtpSink() as smtp:
        sender = make_sender(paths, SmtpChannel("127.0.0.1", smtp.port, FROM, TokenBucket(1000)), payloads)
        drain(sender)
        sender.step()  # nothing new: the ledger is not read twice
    assert sender.outbox.counts() == {"queued": 0, "rendered": 0, "sending": 0, "sent": 10, "failed": 0,
                                      "suppressed": 2}
    reasons = dict(sender.outbox.conn.execute("select customer_id, reason from outbox where state='suppressed'"))
    assert reasons == {"u3": "unsubscribed", "u5": "purchased"}
    sent = {k for i, k in enumerate(keys) if i not in (3, 5)}
    assert set(smtp.ids) == {message_id(idempotency_key(k), FROM) for k in sent}
    assert smtp.duplicates == 0
    msg = next(m for m in smtp.messages if m["To"] == "ann0@example.com")
    assert msg["Subject"] == "You left something in your cart"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = msg.get_body(("html",)).get_content()
    assert "Hi Ann0" in html and "Linen shirt" in html and "COMEBACK10" in html and "Canvas tote" in html
    assert "u0" not in msg["Message-ID"]  # the key is hashed: no customer id in headers
    s = stats(paths[2])
    assert s["counts"]["sent"] == 10 and s["sent"] == 10 and s["expiry_to_sent_p95_s"] > 0
    assert s["by_reason"] == {"suppressed:purchased": 1, "suppressed:unsubscribed": 1}


def test_unsubscribe_after_render_stops_the_send(paths, tmp_path):
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    seed(paths[0], paths[1], payloads, 3)
    with SmtpSink() as smtp:
        sender = make_sender(paths, SmtpChannel("127.0.0.1", smtp.port, FROM, TokenBucket(1000)), payloads)
        sender.outbox.enqueue(__import__("personalization_assets.delivery.sender", fromlist=["x"]).read_ledger(
            paths[0], 0, 10), "smtp")
        for row in sender.outbox.queued():
            sender.render(row)
        assert sender.outbox.counts()["rendered"] == 3
        SqliteGuardProvider(paths[1]).unsubscribe("u1")  # arrives between the render and the send
        drain(sender)
    assert sender.outbox.counts()["sent"] == 2 and len(smtp.messages) == 2
    row = sender.outbox.conn.execute("select state, reason, sent_at from outbox where customer_id = 'u1'").fetchone()
    assert row == ("suppressed", "unsubscribed", None)


def test_crash_after_sending_is_committed_resends_the_same_message_id(paths, tmp_path):
    """The row is `sending` (committed) when the process dies: the next process re-sends it with the
    same Message-ID, so the copy is recognisable (the documented at-most-one duplicate per crash)."""
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    keys = seed(paths[0], paths[1], payloads, 1)
    with SmtpSink() as smtp:
        first = make_sender(paths, SmtpChannel("127.0.0.1", smtp.port, FROM, TokenBucket(1000)), payloads)
        first.step()  # queued -> rendered -> sent
        first.outbox.conn.execute("update outbox set state = 'sending', sent_at = null")  # died before `sent`
        second = make_sender(paths, SmtpChannel("127.0.0.1", smtp.port, FROM, TokenBucket(1000)), payloads)
        drain(second)
    assert list(smtp.ids.values()) == [2] and set(smtp.ids) == {message_id(idempotency_key(keys[0]), FROM)}
    assert second.outbox.counts()["sent"] == 1


def test_missing_payload_fails_with_reason_and_bad_recipient_fails(paths, tmp_path):
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    seed(paths[0], paths[1], payloads, 2)
    payloads.erase({"u0"})
    payloads.sync([("u1", "cus_1", "not-an-address", {"greeting": "Hi"})])
    with SmtpSink() as smtp:
        sender = make_sender(paths, SmtpChannel("127.0.0.1", smtp.port, FROM, TokenBucket(1000)), payloads,
                             policy=RetryPolicy(payload_attempts=1))
        drain(sender)
    reasons = dict(sender.outbox.conn.execute("select customer_id, reason from outbox where state = 'failed'"))
    assert reasons["u0"].startswith("no_payload:")
    assert reasons["u1"].startswith("render: ValueError: no usable recipient address")
    assert smtp.messages == []


def test_smtp_down_retries_with_backoff_then_fails_with_reason(paths, tmp_path):
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    seed(paths[0], paths[1], payloads, 1)
    with SmtpSink() as smtp:
        port = smtp.port  # a port nobody listens on once the sink stops
    clock = [1000.0]
    sender = make_sender(paths, SmtpChannel("127.0.0.1", port, FROM, TokenBucket(1000), timeout=2), payloads,
                         policy=RetryPolicy(max_attempts=3, base_s=1.0))
    sender.outbox.clock = lambda: clock[0]
    delays = []
    for _ in range(3):
        sender.step()
        row = sender.outbox.conn.execute("select state, next_attempt_at, reason from outbox").fetchone()
        if row[0] == "failed":
            break
        delays.append(row[1] - clock[0])
        clock[0] = row[1]
    assert row[0] == "failed" and row[2].startswith("gave up after 3 attempts: smtp 127.0.0.1")
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0  # doubling, with equal jitter


def test_backoff_has_jitter_and_a_cap():
    policy, rng = RetryPolicy(base_s=0.5, cap_s=10), random.Random(3)
    firsts = {round(policy.delay(1, rng), 6) for _ in range(20)}
    assert len(firsts) > 10 and all(0.25 <= d <= 0.5 for d in firsts)
    assert all(5 <= policy.delay(30, rng) <= 10 for _ in range(20))


def test_webhook_429_with_retry_after_is_honoured_and_each_key_delivered_once(paths, tmp_path):
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    keys = seed(paths[0], paths[1], payloads, 30)
    with EspServer(rate=15, retry_after=0.3) as esp:
        bucket = TokenBucket(rate=400, burst=40)
        sender = make_sender(paths, WebhookChannel(esp.url, "esp-secret", bucket), payloads,
                             policy=RetryPolicy(base_s=0.05))
        for _ in range(400):
            sender.step()
            if sender.outbox.counts()["sent"] == 30:
                break
            __import__("time").sleep(0.01)
    assert sender.outbox.counts()["sent"] == 30
    assert esp.throttled > 0 and bucket.rate < 400  # 429s came and the bucket slowed down
    assert min(esp.after_429) >= 0.3 * 0.95  # nothing sent before Retry-After (the backoff alone is ~0.05 s)
    assert set(esp.delivered) == {idempotency_key(k) for k in keys} and set(esp.delivered.values()) == {1}
    assert esp.bad_signatures == 0
    retried = sender.outbox.conn.execute("select count(*) from outbox where attempts > 1").fetchone()[0]
    assert retried > 0


def test_erasure_leaves_no_copy_of_the_person_in_the_outbox_or_payload_files(paths, tmp_path):
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    seed(paths[0], paths[1], payloads, 3)
    with SmtpSink() as smtp:
        sender = make_sender(paths, SmtpChannel("127.0.0.1", smtp.port, FROM, TokenBucket(1000)), payloads)
        drain(sender)
    assert sender.outbox.erase({"u1"}) == 1 and payloads.erase({"u1"}) == 1
    assert sender.outbox.counts()["sent"] == 2 and payloads.get("u1") is None
    for path in (paths[2], tmp_path / "payloads.sqlite"):
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert b"ann1@example.com" not in raw and b"Hi Ann1" not in raw


def test_a_fire_reusing_an_erased_rowid_is_still_sent(paths, tmp_path):
    """Erasure deleted the ledger's last row; SQLite gives the next fire the same rowid, which the
    rowid cursor has passed: the time-based reconciliation still picks it up."""
    from datetime import datetime, timezone

    from personalization_assets.realtime.engine import Decision
    from personalization_assets.realtime.ledger import Ledger

    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    seed(paths[0], paths[1], payloads, 2)
    with SmtpSink() as smtp:
        sender = make_sender(paths, SmtpChannel("127.0.0.1", smtp.port, FROM, TokenBucket(1000)), payloads)
        drain(sender)
        ledger = Ledger(paths[0])
        assert ledger.erase({"u1"}) == 1
        now = datetime.now(timezone.utc)
        ledger.commit([Decision("fire", "cart_abandonment", "cart_id:c9", "u0", now, now, now, now)], 2)
        assert ledger.conn.execute("select max(rowid) from trigger_fires").fetchone()[0] == 2  # reused
        ledger.close()
        sender._reconciled = float("-inf")  # as after a minute
        drain(sender)
    assert sender.outbox.conn.execute("select state from outbox where cart = 'cart_id:c9'").fetchone() == ("sent",)


def test_preview_channel_keeps_mail_on_the_page_and_says_it_was_not_delivered(paths, tmp_path):
    from personalization_assets.delivery.channels import PreviewChannel

    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    seed(paths[0], paths[1], payloads, 2, unsubscribed={1})
    sender = make_sender(paths, PreviewChannel(TokenBucket(100)), payloads)
    drain(sender)
    rows = sender.outbox.conn.execute("select state, reason, channel from outbox order by customer_id").fetchall()
    assert rows == [("sent", "preview: kept on the outbox page, not delivered", "preview"),
                    ("suppressed", "unsubscribed", "preview")]


def test_forget_erases_the_outbox_and_payload_copy_through_the_erasure_stores(tmp_path):
    """`personalization forget` walks `local_stores`: the delivery files are among them, the
    person's rows go and another person's stay."""
    from personalization_assets.activation.erasure_match import Identifiers
    from personalization_assets.activation.erasure_stores import local_stores

    paths = (tmp_path / "triggers.sqlite", tmp_path / "guard.sqlite", tmp_path / "outbox.sqlite")
    payloads = PayloadStore(tmp_path / "delivery_payloads.sqlite")
    seed(paths[0], paths[1], payloads, 3)
    with SmtpSink() as smtp:
        drain(make_sender(paths, SmtpChannel("127.0.0.1", smtp.port, FROM, TokenBucket(1000)), payloads))
    payloads.close()
    from personalization_assets.experiments.holdouts import ExposureLog

    exposures = ExposureLog(tmp_path / "exposures.sqlite")
    exposures.log([("cart_holdout", f"fire{i}", f"u{i}", f"cus_{i}", "control", 1, 0.0) for i in (1, 2)])
    exposures.close()
    stores = [s for s in local_stores(tmp_path, f"sqlite:///{tmp_path / 'events.db'}",
                                      f"sqlite:///{tmp_path / 'email_events.db'}", tmp_path / "landing")
              if s.name.startswith("delivery")]
    assert [s.name for s in stores] == ["delivery_outbox", "delivery_payloads", "delivery_exposures"]
    ann1 = Identifiers(user_ids={"u1"})
    assert [s.remaining(ann1) for s in stores] == [1, 1, 1]
    assert [s.erase(ann1) for s in stores] == [1, 1, 1]
    assert [s.remaining(ann1) for s in stores] == [0, 0, 0]
    assert [s.remaining(Identifiers(user_ids={"u2"})) for s in stores] == [1, 1, 1]
