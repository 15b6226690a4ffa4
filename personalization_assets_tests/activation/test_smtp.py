"""Triggered e-mail over SMTP to a real aiosmtpd server on 127.0.0.1."""

import email
import socket
from email import policy

import pytest
from aiosmtpd.controller import Controller

from personalization_assets.activation.destinations import SmtpMail
from personalization_assets.activation.model import SyncRow
from personalization_assets.activation.unsubscribe import read_token

SECRET = "unsub-secret"
PAYLOAD = {"greeting": "Hi Anna", "locale": "en-GB", "cart": [{"name": "Red Shoes", "quantity": 2, "price": "59.00 GBP"}],
           "last_viewed": [], "recommendations": [{"name": "Blue Socks", "reason": "often bought together"}],
           "discount_eligible": True, "loyalty_tier": "gold"}


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=policy.default)))
        return "250 Message accepted"


@pytest.fixture
def inbox():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def smtp(port: int) -> SmtpMail:
    return SmtpMail("127.0.0.1", port, "Shop <news@shop.example>", "https://shop.example/unsubscribe", SECRET, timeout=5)


def test_rendered_multipart_message_with_one_click_unsubscribe(inbox):
    handler, port = inbox
    row = SyncRow("fire-1", "cus_1", "anna@example.com", "event", "cart_abandonment",
                  {**PAYLOAD, "subject": "You left something behind"}, idempotency_key="abc123")
    assert smtp(port).send([row], "b1")[0].ok
    ((to, msg),) = handler.messages
    assert to == ["anna@example.com"] and msg["Subject"] == "You left something behind"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Hi Anna" in part and "Red Shoes" in part and "Blue Socks" in part and "COMEBACK10" in part
    assert "<table>" in html and "<" not in text.replace("<https", "")
    assert msg["Message-ID"] == "<abc123@shop.example>"
    link = msg["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://shop.example/unsubscribe?t=")
    assert read_token(SECRET, link.split("t=", 1)[1]) == "anna@example.com"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link in text and link.replace("&", "&amp;") in html


def test_refused_recipient_and_unrenderable_payload_fail_their_own_rows(inbox):
    handler, port = inbox
    rows = [SyncRow("a", "c1", "bob@refused.example", "event", "t", PAYLOAD, idempotency_key="k1"),
            SyncRow("b", "c2", "cara@example.com", "event", "t", {"locale": "en"}, idempotency_key="k2"),
            SyncRow("c", "c3", "dan@example.com", "event", "t", PAYLOAD, idempotency_key="k3")]
    results = smtp(port).send(rows, "b2")
    assert [r.ok for r in results] == [False, False, True]
    assert "refused" in results[0].error and not results[0].retryable
    assert results[1].error.startswith("render: UndefinedError")
    assert [to for to, _ in handler.messages] == [["dan@example.com"]]


def test_smtp_server_down_is_a_retryable_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (result,) = smtp(port).send([SyncRow("a", "c", "x@example.com", "event", "t", PAYLOAD, idempotency_key="k")], "b")
    assert not result.ok and result.retryable


def test_unsubscribe_link_must_be_https():
    with pytest.raises(ValueError, match="https"):
        SmtpMail("127.0.0.1", 25, "a@b.c", "http://shop.example/u", SECRET).message(
            SyncRow("a", "c", "x@example.com", "event", "t", PAYLOAD, idempotency_key="k"))
