"""Send-time choice as an experiment: the sender holds treated fires for the customer's preferred
hour and sends the control at once, logs both arms as exposures, and the effect of the hour is
measured in marts.experiment_results."""

import random
from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from personalization_assets.activation.ratelimit import TokenBucket
from personalization_assets.assets import experiments as assets
from personalization_assets.delivery.channels import SmtpChannel
from personalization_assets.delivery.outbox import Outbox
from personalization_assets.delivery.payloads import PayloadStore
from personalization_assets.delivery.render import Unsubscribe
from personalization_assets.delivery.sender import Sender
from personalization_assets.experiments.assign import CONTROL, TREATMENT, assign_arm
from personalization_assets.experiments.holdouts import (
    EXPOSURE_COLUMNS, ExposureLog, HoldoutGate, declared_experiments, payload_customer_key)
from personalization_assets.experiments.send_time import SendTimeGate, preferred_instant
from personalization_assets.realtime.guards import SqliteGuardProvider

from ..delivery.peers import SmtpSink, seed
from .test_assets import ALL, NOW, world  # noqa: F401  (the fixture: a warehouse with a holdout's fires)


def _utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def test_preferred_instant_is_the_next_local_hour_daylight_saving_included():
    base = _utc(2026, 3, 28, 22, 10)  # Saturday 23:10 in Berlin (CET); clocks go forward that night
    assert preferred_instant(base, 9, "Europe/Berlin") == _utc(2026, 3, 29, 7, 0)  # 09:00 CEST
    assert preferred_instant(base, 23, "Europe/Berlin") == base  # already the preferred hour: now
    assert preferred_instant(base, 2, "Europe/Berlin") == _utc(2026, 3, 30, 0, 0)  # 02:00 is skipped on the 29th
    assert preferred_instant(base, 4, "Asia/Kolkata") == _utc(2026, 3, 28, 22, 30)  # +05:30
    assert preferred_instant(base, 23, "Not/AZone") == _utc(2026, 3, 28, 23, 0)  # unknown zone: UTC
    rng = random.Random(3)
    for _ in range(300):  # never before the decision, at most a day later, always in the hour asked for
        at, hour = _utc(2026, 1, 1) + rng.uniform(0, 365 * 86400), rng.randrange(24)
        zone = rng.choice(["UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Adelaide"])
        when = preferred_instant(at, hour, zone)
        assert at <= when < at + 86400 + 3600
        assert datetime.fromtimestamp(when, timezone.utc).astimezone(__import__("zoneinfo").ZoneInfo(zone)).hour == hour
    with pytest.raises(ValueError, match="not an hour"):
        preferred_instant(base, 24, "UTC")


def test_treated_fires_wait_for_the_preferred_hour_control_fires_go_at_once_both_logged(tmp_path):
    n = 40
    ledger, guard = tmp_path / "triggers.sqlite", tmp_path / "guard.sqlite"
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    seed(ledger, guard, payloads, n, start=start)
    experiment = next(e for e in declared_experiments(send_time_holdout="50%") if e.kind == "send_time")
    log = ExposureLog(tmp_path / "exposures.sqlite")
    hour = (start + timedelta(hours=3)).hour  # everyone prefers 3 hours from now (UTC)
    log.sync_send_hours([(f"cus_{i:06d}", hour, "UTC") for i in range(n)])
    now = [start.timestamp() + 300]
    clock = lambda: now[0]  # noqa: E731
    gate = SendTimeGate(experiment, log, clock=clock, key_of=lambda cid: payload_customer_key(payloads, cid))
    with SmtpSink() as smtp:
        sender = Sender(Outbox(tmp_path / "outbox.sqlite", clock=clock), ledger, payloads, SqliteGuardProvider(guard),
                        SmtpChannel("127.0.0.1", smtp.port, "Shop <s@shop.example>", TokenBucket(1000)),
                        Unsubscribe("https://shop.example/u", "k"), rng=random.Random(1), clock=clock, send_time=gate)
        for _ in range(20):
            sender.step()
        arms = {f"u{i}": assign_arm(experiment, f"cus_{i:06d}") for i in range(n)}
        first = {m["To"] for m in smtp.messages}
        assert first == {f"ann{i}@example.com" for i in range(n) if arms[f"u{i}"] == CONTROL}
        held = dict(sender.outbox.conn.execute("select customer_id, next_attempt_at from outbox where state = 'rendered'"))
        assert set(held) == {c for c, a in arms.items() if a == TREATMENT} and 5 < len(held) < 35
        due = datetime.fromtimestamp(min(held.values()), timezone.utc)
        assert due.hour == hour and due.minute == 0 and set(held.values()) == {min(held.values())}
        now[0] = min(held.values()) + 1  # the preferred hour has come
        for _ in range(20):
            sender.step()
        assert {m["To"] for m in smtp.messages} == {f"ann{i}@example.com" for i in range(n)}
        assert len(smtp.messages) == n  # each once
    exposures = pd.DataFrame(log.rows(), columns=EXPOSURE_COLUMNS)
    assert len(exposures) == n and set(exposures.experiment) == {experiment.name}  # one decision each, no ghosts
    assert dict(zip(exposures.customer_id, exposures.arm)) == arms and not exposures.ghost.any()
    assert (exposures.exposed_at == start.timestamp() + 300).all()  # logged when first decided, not when sent


def test_the_effect_of_the_send_hour_is_measured_in_experiment_results(world):  # noqa: F811
    """Fires the holdout let through go through the send-time gate; treated members (preferred
    hour) order once more with probability UPLIFT: the orders lift's CI holds it."""
    uplift = 0.25
    warehouse, sent = world
    experiment = next(e for e in declared_experiments() if e.kind == "send_time")
    data_dir = warehouse.database.rsplit("/", 1)[0]
    log = ExposureLog(f"{data_dir}/exposures.sqlite")
    gate = SendTimeGate(experiment, log, clock=lambda: (NOW - timedelta(days=10)).timestamp())
    rng = np.random.default_rng(5)
    extra = []
    for key, was_sent in sent.items():
        if not was_sent:
            continue
        gate.schedule(f"fire-{key}", f"u{key}", (NOW - timedelta(days=10)).timestamp(), customer_key=key)
        if assign_arm(experiment, key) == TREATMENT and rng.random() < uplift:
            extra.append(key)
    log.close()
    orders = pd.DataFrame({
        "order_id": [f"st{i}" for i in range(len(extra))], "customer_record_id": [f"crm:{k}" for k in extra],
        "email": None, "status": "completed", "currency": "GBP", "total_minor": 5000, "total_reporting_minor": 5000,
        "fx_rate": 1.0, "created_at": NOW - timedelta(days=8), "cart_id": None})
    with warehouse.connect() as conn:
        conn.raw.register("extra", orders)
        conn.raw.execute("insert into staging.orders select * from extra")
    result = dg.materialize(ALL, resources={"warehouse": warehouse})
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed, check.metadata
    with warehouse.connect() as conn:
        table = conn.query("select * from marts.experiment_results where experiment = ?", [experiment.name])
    row = table[(table.outcome == "orders") & (table.arm == TREATMENT)].iloc[0]
    control = table[(table.outcome == "orders") & (table.arm == CONTROL)].iloc[0]
    assert row.n + control.n == sum(sent.values())  # every fire that was sent, in one arm or the other
    assert row.ci_low <= uplift <= row.ci_high and row.ci_low > 0


def test_send_hours_are_copied_from_the_warehouse_and_erased_with_the_person(tmp_path):
    import duckdb

    from personalization_assets.experiments.send_time import refresh_send_hours

    db, log = tmp_path / "warehouse.duckdb", ExposureLog(tmp_path / "exposures.sqlite")
    assert refresh_send_hours(db, log) is None  # no warehouse yet: nothing copied, nothing lost
    with duckdb.connect(str(db)) as conn:
        conn.execute("create schema marts")
        conn.execute("create table marts.customer_profiles as select * from (values ('cus_a', 9, 'Europe/Berlin'),"
                     " ('cus_b', 20, null)) t(customer_key, preferred_send_hour, timezone)")
    assert refresh_send_hours(db, log) == 2
    assert log.send_hour("cus_a") == (9, "Europe/Berlin") and log.send_hour("cus_b") == (20, None)
    with duckdb.connect(str(db)) as conn:  # cus_b left the marts (erased, merged away): the copy follows
        conn.execute("delete from marts.customer_profiles where customer_key = 'cus_b'")
    assert refresh_send_hours(db, log) == 1 and log.send_hour("cus_b") is None
    log.erase({"cus_a"})
    assert log.send_hour("cus_a") is None


def test_the_erasure_check_sees_a_copied_send_hour_until_it_is_erased(tmp_path):
    """The send-hour copy lives in exposures.sqlite: erasure's residual count must include it."""
    from personalization_assets.activation.erasure_match import Identifiers
    from personalization_assets.activation.erasure_stores import DeliveryStore

    log = ExposureLog(tmp_path / "exposures.sqlite")
    log.sync_send_hours([("cus_a", 9, "Europe/Berlin"), ("cus_b", 20, None)])
    log.close()
    store = DeliveryStore(tmp_path / "exposures.sqlite", "exposures")
    person = Identifiers(customer_keys={"cus_a"})
    assert store.remaining(person) == 1  # no exposure yet, but the send hour is personal data
    store.erase(person)
    assert store.remaining(person) == 0
    assert store.remaining(Identifiers(customer_keys={"cus_b"})) == 1  # the other person's copy stays
