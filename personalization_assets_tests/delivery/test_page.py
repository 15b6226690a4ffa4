"""See the emails: the outbox page served on 127.0.0.1, opened in headless Chromium (Debian's
`chromium` package; the test skips without it, and fails under CI=true)."""

from __future__ import annotations

import random
import subprocess

import pytest

from personalization_assets.activation.ratelimit import TokenBucket
from personalization_assets.delivery.channels import SmtpChannel
from personalization_assets.delivery.outbox import Outbox
from personalization_assets.delivery.page import create_app
from personalization_assets.delivery.payloads import PayloadStore
from personalization_assets.delivery.render import Unsubscribe
from personalization_assets.delivery.sender import Sender
from personalization_assets.realtime.guards import SqliteGuardProvider

from ..asgi import serving
from ..conftest import require_tool
from .peers import SmtpSink, seed

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def outbox_with_mail(tmp_path):
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    seed(tmp_path / "triggers.sqlite", tmp_path / "guard.sqlite", payloads, 4, unsubscribed={2})
    with SmtpSink() as smtp:
        sender = Sender(Outbox(tmp_path / "outbox.sqlite"), tmp_path / "triggers.sqlite", payloads,
                        SqliteGuardProvider(tmp_path / "guard.sqlite"),
                        SmtpChannel("127.0.0.1", smtp.port, "Shop <news@shop.example>", TokenBucket(100)),
                        Unsubscribe("https://shop.example/u", "s3cret"), rng=random.Random(1))
        for _ in range(5):
            sender.step()
    assert sender.outbox.counts()["sent"] == 3 and sender.outbox.counts()["suppressed"] == 1
    return tmp_path / "outbox.sqlite"


@pytest.fixture
def page_url(outbox_with_mail):
    with serving(create_app(outbox_with_mail), "the outbox page") as port:
        yield f"http://127.0.0.1:{port}/"


def test_outbox_page_in_headless_chromium_shows_sent_and_suppressed_mail(page_url, tmp_path):
    chromium = require_tool("chromium")
    dom = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page_url],
                         capture_output=True, text=True, timeout=60).stdout
    assert "<h1>Outbox</h1>" in dom, dom[:500]
    assert dom.count('data-state="sent"') == 3 and dom.count('data-state="suppressed"') == 1
    assert "unsubscribed" in dom  # the reason a fire was stopped
    assert dom.count("cart_abandonment") == 4 and "You left something in your cart" in dom
    assert dom.count("<iframe sandbox") == 4  # the rendered HTML, sandboxed, sent or stopped
    assert "Hi Ann0" in dom and "Linen shirt" in dom  # ...with the customer's merge fields
    assert "a***@example.com" in dom and "ann0@example.com" not in dom  # recipients masked
    assert "timer expiry → sent" in dom and " s</span>" in dom  # the timing of each message
    assert "sent: 3" in dom and "suppressed: 1" in dom
