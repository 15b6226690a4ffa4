"""An order that reaches the engine after the fire, before the send, stops the e-mail: the engine
records the orders it reads (`orders_seen` in its ledger) and the sender re-checks them."""

from datetime import datetime, timedelta, timezone

from personalization_assets.activation.ratelimit import TokenBucket
from personalization_assets.bus import open_bus
from personalization_assets.delivery.channels import SmtpChannel
from personalization_assets.delivery.outbox import Outbox
from personalization_assets.delivery.payloads import PayloadStore
from personalization_assets.delivery.render import Unsubscribe
from personalization_assets.delivery.sender import Sender
from personalization_assets.realtime.guards import DictGuardProvider, SqliteGuardProvider
from personalization_assets.realtime.ledger import Ledger
from personalization_assets.realtime.runner import EngineProcess

from ..realtime.helpers import triggers
from .peers import SmtpSink, payload


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def segment(name, at, user, cart, order=None):
    return {"type": "track", "event": name, "userId": user, "messageId": f"{name}-{cart}-{user}",
            "timestamp": at.isoformat(), "properties": {"cart_id": cart, "order_id": order}}


def test_an_order_read_after_the_fire_stops_the_send(tmp_path):
    now = datetime.now(timezone.utc) - timedelta(hours=2)
    clock = Clock(now)
    bus = open_bus(f"sqlite:///{tmp_path}/events.db")
    ledger = Ledger(tmp_path / "triggers.sqlite")
    # all three triggers: a Product Added cancels browse abandonment, and must not stop a cart e-mail
    proc = EngineProcess(bus, ledger, triggers("cart_abandonment", "browse_abandonment", "post_purchase_cross_sell"),
                         DictGuardProvider(allow_unknown=True),
                         checkpoint_every_s=0.0, clock=clock)
    bus.append([segment("Product Added", now, "u1", "c1"), segment("Product Added", now, "u2", "c2"),
                segment("Product Added", now, "u3", "c3")])
    clock.at = now + timedelta(hours=1, minutes=10)
    proc.step()
    assert ledger.count("fire") == 3
    bus.append([segment("Product Added", now + timedelta(hours=1, minutes=11), "u3", "c4")])  # a new cart: no order
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    payloads.sync([(u, u, f"{u}@example.com", payload(0)) for u in ("u1", "u2", "u3")])
    with SmtpSink() as smtp:
        sender = Sender(Outbox(tmp_path / "outbox.sqlite"), tmp_path / "triggers.sqlite", payloads,
                        SqliteGuardProvider(tmp_path / "guard.sqlite", allow_unknown=True),
                        SmtpChannel("127.0.0.1", smtp.port, "Shop <n@shop.example>", TokenBucket(100)),
                        Unsubscribe("https://shop.example/u", "s"))
        sender.outbox.enqueue(sender.ledger.fires(0, 10), "smtp")
        for row in sender.outbox.queued():
            sender.render(row)  # fired and rendered; now the orders come in
        bus.append([segment("Order Completed", now + timedelta(hours=1, minutes=11), "u1", "c1", "o1"),
                    segment("Order Completed", now + timedelta(hours=1, minutes=11), "u2", None, "o2")])
        proc.step()
        for _ in range(3):
            sender.step()
        states = dict(sender.outbox.conn.execute("select customer_id, state || ':' || coalesce(reason, '')"
                                                 " from outbox").fetchall())
    assert states == {"u1": "suppressed:ordered", "u2": "suppressed:ordered", "u3": "sent:"}  # by cart, by customer
    assert [m["To"] for m in smtp.messages] == ["u3@example.com"]
    seen = dict(ledger.conn.execute("select id, at from orders_seen").fetchall())
    assert {"cart_abandonment|cart_id:c1", "cart_abandonment|user:u1", "cart_abandonment|user:u2",
            "browse_abandonment|user:u3"} <= set(seen)  # each trigger's own cancel events and match fields
    assert "cart_abandonment|user:u3" not in seen and "cart_abandonment|cart_id:c4" not in seen
    assert ledger.erase({"u1"}) >= 1 and ledger.holds({"u1"}) == 0  # erasure covers orders_seen too
    ledger.close()
    bus.close()
