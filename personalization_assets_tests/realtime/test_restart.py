"""Exactly-once across restarts and replays: real SQLite bus and ledger, a hand-driven clock."""

from datetime import datetime, timezone

from personalization_assets.bus import open_bus
from personalization_assets.realtime.guards import DictGuardProvider
from personalization_assets.realtime.ledger import Ledger
from personalization_assets.realtime.runner import EngineProcess, inspect_state
from personalization_assets.realtime.state import restore, snapshot

from personalization_assets_tests.realtime.helpers import T0, H, M, engine, ev, run, triggers


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def _segment(name, at, user, cart, order=None):
    return {"type": "track", "event": name, "userId": user, "messageId": f"{name}-{cart}-{user}",
            "timestamp": at.isoformat(), "properties": {"cart_id": cart, "order_id": order}}


def _process(tmp_path, clock, checkpoint_every_s=0.0):
    bus = open_bus(f"sqlite:///{tmp_path}/events.db")
    ledger = Ledger(tmp_path / "triggers.sqlite")
    proc = EngineProcess(bus, ledger, triggers("cart_abandonment"), DictGuardProvider(allow_unknown=True),
                         checkpoint_every_s=checkpoint_every_s, clock=clock)
    return bus, ledger, proc


def test_a_restart_neither_loses_a_timer_nor_fires_twice(tmp_path):
    now = datetime.now(timezone.utc)  # the SQLite bus stamps receive time with the wall clock
    clock = Clock(now)
    bus, ledger, proc = _process(tmp_path, clock)
    bus.append([_segment("Product Added", now, "u1", "c1"), _segment("Product Added", now, "u2", "c2"),
                _segment("Order Completed", now, "u2", "c2", "o2")])
    proc.step()
    assert set(proc.engine.timers) == {("cart_abandonment", "cart_id:c1")}
    ledger.close()
    bus.close()
    # restart: the open timer comes back from the checkpoint, not from re-reading the bus
    bus, ledger, proc = _process(tmp_path, clock)
    assert proc.offset == 3 and set(proc.engine.timers) == {("cart_abandonment", "cart_id:c1")}
    assert inspect_state(tmp_path / "triggers.sqlite")["open_timers"][0]["key"] == "cart_id:c1"
    clock.at = now + H + 3 * M
    proc.step()
    assert ledger.count("fire") == 1
    ledger.close()
    bus.close()
    # crash before the checkpoint: rebuild from the whole bus; the ledger keeps it exactly-once
    ledger = Ledger(tmp_path / "triggers.sqlite")
    ledger.conn.execute("delete from engine_checkpoint")
    ledger.close()
    bus, ledger, proc = _process(tmp_path, clock)
    assert proc.offset == 0
    proc.step()
    assert ledger.count("fire") == 1 and proc.engine.timers == {}
    assert [row[1:4] for row in ledger.fires()] == [("cart_abandonment", "u1", "cart_id:c1")]
    ledger.close()
    bus.close()


def test_replaying_the_same_events_into_a_fresh_engine_records_no_new_fire(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    events = [ev("Product Added", T0, user=u, cart=u) for u in ("a", "b", "c")]
    first = run(engine("cart_abandonment"), events, T0 + 2 * H)
    assert len(ledger.commit(first, 3)) == 3
    replay = run(engine("cart_abandonment"), events, T0 + 2 * H)  # no memory of the first run
    assert [d.fire_key for d in replay if d.kind == "fire"] == [d.fire_key for d in first]
    assert ledger.commit(replay, 3) == [] and ledger.count("fire") == 3


def test_a_checkpoint_taken_before_a_fire_and_replayed_after_it_is_deduplicated(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    e = engine("cart_abandonment")
    run(e, [ev("Product Added", T0)], T0 + 10 * M)
    ledger.commit([], 1, snapshot(e))  # checkpoint with the timer open
    fired = e.advance(T0 + 2 * H)
    assert len(ledger.commit(fired, 1)) == 1  # fire recorded, checkpoint not updated: "crash"
    restored = restore(ledger.checkpoint().state, triggers("cart_abandonment"), e.guard)
    again = restored.advance(T0 + 2 * H)
    assert [d.kind for d in again] == ["fire"] and ledger.commit(again, 1) == []
    assert ledger.count("fire") == 1


def test_snapshot_round_trip_keeps_every_fact():
    e = engine()
    run(e, [ev("Product Added", T0, anon="a1", checkout="k1"), ev("Product Viewed", T0, user="u2", cart=None),
            ev("Order Completed", T0 + M, user="u3", cart="z", order="o3"),
            ev("Order Completed", T0 + 2 * M, user="u4", cart="y", order="o4")], T0 + 3 * H)
    data = snapshot(e)
    assert data["timers"] and data["cancels"] and data["history"] and data["decided"] and data["aliases"]
    again = snapshot(restore(data, triggers(), e.guard))
    assert {k: sorted(map(str, v)) if isinstance(v, list) else v for k, v in again.items()} == \
        {k: sorted(map(str, v)) if isinstance(v, list) else v for k, v in data.items()}
