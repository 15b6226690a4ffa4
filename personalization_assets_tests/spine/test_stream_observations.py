"""Dagster sees the stream: what the trigger engine and the sender did shows on the asset graph as
observations of activation/trigger_fires and activation/triggered_emails, without a run."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from personalization_assets import sensors
from personalization_assets.delivery.outbox import Fire, Outbox
from personalization_assets.realtime.engine import Decision
from personalization_assets.realtime.ledger import Ledger


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(sensors, "SETTLE_S", 0.0)  # the test's rows are committed before the tick
    return tmp_path


def _decision(kind: str, customer: str, due: datetime, late_s: float) -> Decision:
    return Decision(kind=kind, trigger="cart_abandonment", group=f"cart-{customer}", customer=customer,
                    window_start=due - timedelta(minutes=30), due_at=due, ready_at=due,
                    decided_at=due + timedelta(seconds=late_s), reason=None if kind == "fire" else "unsubscribed")


def _tick(context_cursor: str | None):
    with dg.instance_for_test() as instance:
        return sensors.activation_stream_sensor(dg.build_sensor_context(instance=instance, cursor=context_cursor))


def test_fires_and_sends_become_observations_with_counts_and_latencies(data_dir):
    due = datetime.now(timezone.utc) - timedelta(seconds=10)
    ledger = Ledger(data_dir / "triggers.sqlite")
    ledger.commit([_decision("fire", "u1", due, 0.1), _decision("fire", "u2", due, 0.3),
                   _decision("suppress", "u3", due, 0.2)])
    outbox = Outbox(data_dir / "outbox.sqlite")
    ready = due.timestamp()
    outbox.enqueue([Fire(f"k{i}", "cart_abandonment", f"u{i}", f"cart-u{i}", ready - 1800, ready, ready + 0.1, i)
                    for i in (1, 2)], channel="smtp")
    outbox.sending("k1")
    outbox.sent("k1")
    outbox.suppressed("k2", "unsubscribed")
    ledger.conn.close()
    outbox.close()

    result = _tick(None)
    assert isinstance(result, dg.SensorResult) and not result.run_requests  # no run per batch
    events = {e.asset_key.to_user_string(): e for e in result.asset_events}
    assert set(events) == {"activation/trigger_fires", "activation/triggered_emails"}
    assert all(isinstance(e, dg.AssetObservation) for e in events.values())
    fires = events["activation/trigger_fires"].metadata
    assert (fires["fires"].value, fires["suppressed"].value, fires["decisions"].value) == (2, 1, 3)
    assert fires["expiry_to_decision_p95_s"].value == pytest.approx(0.3, abs=0.01)
    assert fires["by_trigger_outcome"].value == {"cart_abandonment:fire": 2, "cart_abandonment:suppress": 1}
    sends = events["activation/triggered_emails"].metadata
    assert (sends["sent"].value, sends["suppressed"].value) == (1, 1)
    assert sends["by_reason"].value == {"suppressed:unsubscribed": 1}
    assert 9 < sends["expiry_to_sent_p95_s"].value < 60  # timer expired ~10 s ago, sent just now
    assert isinstance(sends["expiry_to_sent_p95_s"], dg.FloatMetadataValue)  # plotted over time in the UI

    again = _tick(result.cursor)  # the next window: nothing new, nothing counted twice
    assert not again.asset_events and again.skip_reason and "no fire" in again.skip_reason.skip_message


def test_only_the_new_window_is_counted(data_dir):
    ledger = Ledger(data_dir / "triggers.sqlite")
    due = datetime.now(timezone.utc)
    ledger.commit([_decision("fire", "u1", due, 0.1)])
    first = _tick(None)
    time.sleep(0.01)
    ledger.commit([_decision("fire", "u2", due, 0.1), _decision("fire", "u3", due, 0.1)])
    ledger.conn.close()
    second = _tick(first.cursor)
    [observation] = second.asset_events
    assert observation.metadata["fires"].value == 2


def test_no_service_yet_is_a_skip_that_says_where_it_looked(data_dir):
    result = _tick(None)
    assert not result.asset_events
    assert str(data_dir / "triggers.sqlite") in result.skip_reason.skip_message


def test_prod_starts_automation_only_when_the_deployment_says_so(monkeypatch):
    from personalization_assets import settings

    monkeypatch.delenv("PERSONALIZATION_AUTOMATION", raising=False)
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "local")
    assert settings.automation_running()
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "prod")
    assert not settings.automation_running()
    monkeypatch.setenv("PERSONALIZATION_AUTOMATION", "running")
    assert settings.automation_running()
    monkeypatch.setenv("PERSONALIZATION_AUTOMATION", "on")
    with pytest.raises(ValueError, match="PERSONALIZATION_AUTOMATION must be 'running' or 'stopped'"):
        settings.automation_running()
