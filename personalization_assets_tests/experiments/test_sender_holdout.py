"""The sender's one decision point with a holdout: control fires are ghosts (logged, never sent),
suppressed people are in neither arm, treatment fires are sent and logged."""

import random

import pandas as pd
import yaml

from personalization_assets.activation.ratelimit import TokenBucket
from personalization_assets.delivery.channels import SmtpChannel
from personalization_assets.delivery.outbox import Outbox
from personalization_assets.delivery.payloads import PayloadStore
from personalization_assets.delivery.render import Unsubscribe
from personalization_assets.delivery.sender import Sender
from personalization_assets.experiments.assign import CONTROL, assign_arm
from personalization_assets.experiments.holdouts import (
    EXPOSURE_COLUMNS, ExposureLog, HoldoutGate, declared_experiments, payload_customer_key)
from personalization_assets.realtime.guards import SqliteGuardProvider

from ..delivery.peers import SmtpSink, seed


def test_control_fires_are_ghosts_and_suppressed_people_are_in_neither_arm(tmp_path):
    ledger, guard, outbox = tmp_path / "triggers.sqlite", tmp_path / "guard.sqlite", tmp_path / "outbox.sqlite"
    payloads = PayloadStore(tmp_path / "payloads.sqlite")
    seed(ledger, guard, payloads, 40, unsubscribed={3, 4})
    triggers = tmp_path / "t.yaml"
    triggers.write_text(yaml.safe_dump({"triggers": [{"name": "cart_abandonment", "holdout": "40%"}]}))
    experiments = declared_experiments(triggers, global_control="10%", segment_docs=[], audience_docs=[], send_time_holdout=False)
    gate = HoldoutGate(experiments, ExposureLog(tmp_path / "exposures.sqlite"),
                       key_of=lambda cid: payload_customer_key(payloads, cid))
    with SmtpSink() as smtp:
        sender = Sender(Outbox(outbox), ledger, payloads, SqliteGuardProvider(guard),
                        SmtpChannel("127.0.0.1", smtp.port, "Shop <s@shop.example>", TokenBucket(1000)),
                        Unsubscribe("https://shop.example/u", "k"), rng=random.Random(1), holdouts=gate)
        for _ in range(200):
            sender.step()
            if sum(sender.outbox.counts()[s] for s in ("queued", "rendered", "sending")) == 0:
                break
        recipients = {m["To"] for m in smtp.messages}
    states = dict(sender.outbox.conn.execute("select customer_id, state || ':' || coalesce(reason, '') from outbox"))
    log = pd.DataFrame(gate.exposures.rows(), columns=EXPOSURE_COLUMNS)
    glob, trig = experiments
    for i in range(40):
        key, cid = f"cus_{i:06d}", f"u{i}"
        held = assign_arm(glob, key) == CONTROL or assign_arm(trig, key) == CONTROL
        mine = log[log.customer_id == cid]
        if i in (3, 4):
            assert states[cid] == "suppressed:unsubscribed" and mine.empty  # in neither arm
        elif held:
            assert states[cid].startswith("suppressed:holdout: control arm of") and f"ann{i}@example.com" not in recipients
            assert mine["ghost"].max() == 1 and set(mine.customer_key) == {key}
        else:
            assert states[cid].startswith("sent") and f"ann{i}@example.com" in recipients
            assert set(mine.arm) == {"treatment"} and mine["ghost"].max() == 0
    assert 0 < (log.ghost == 1).sum() < 40


def test_holdouts_are_on_by_default_and_off_only_when_asked(monkeypatch):
    """The global control "never receives marketing email": a sender started without flags applies it."""
    import argparse

    from personalization_assets.delivery.cli import configure_parser

    def parsed(*argv):
        p = argparse.ArgumentParser()
        configure_parser(p)
        return p.parse_args(list(argv)).holdouts

    monkeypatch.delenv("DELIVERY_HOLDOUTS", raising=False)
    assert parsed() is True and parsed("--no-holdouts") is False
    monkeypatch.setenv("DELIVERY_HOLDOUTS", "off")
    assert parsed() is False and parsed("--holdouts") is True
    monkeypatch.setenv("DELIVERY_HOLDOUTS", "on")
    assert parsed() is True
