"""`bench.delivery`'s adversarial part, small: carts through the engine (recording the orders it
reads), then a real sender process to a real SMTP server, with unsubscribes (guard store and the
e-mail events bus) and purchases between the fire and the send. Nothing is lost, and no e-mail
goes to an ordered cart or to someone who asked out; the run must give those checks something to
catch (ordered carts that fired, suppressions for each reason)."""

from __future__ import annotations

import sqlite3

from bench.delivery import adversarial


def test_adversarial_carts_lose_nothing_and_send_nothing_after_an_order_or_an_unsubscribe(tmp_path):
    out = adversarial(1500, tmp_path)
    assert out["fires"] > 300 and out["lost"] == 0
    assert out["engine_after_order"] == 0 and out["engine_twice"] == 0
    assert out["ordered_carts_fired"] > 50  # fired before its order came: the sender must stop these
    assert out["unsubscribed_meanwhile"] > 20 and out["bought_meanwhile"] > 10
    assert out["sent_after_order"] == 0 and out["sent_after_unsub"] == 0 and out["unmatched_sends"] == 0
    assert out["states"]["sent"] > 0 and sum(out["states"].values()) == out["fires"]
    with sqlite3.connect(tmp_path / "smtp" / "outbox.sqlite") as outbox:
        reasons = {r for (r,) in outbox.execute("select distinct reason from outbox where state = 'suppressed'")}
    assert {"ordered", "purchased", "unsubscribed", "unsubscribed (e-mail events bus: one_click)"} <= reasons, reasons
