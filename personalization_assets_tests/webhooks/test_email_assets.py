"""E-mail events assets on a temporary DuckDB file: bus + landing files -> raw -> staging ->
suppressions; re-dropped files and retried webhooks never duplicate; the landing sensor."""

from __future__ import annotations

import csv
import json
import time

import dagster as dg
import duckdb
import pytest

from personalization_assets.assets import email_events as assets
from personalization_assets.email_events import normalize
from personalization_assets.email_events.bus import email_events_bus_url
from personalization_assets.resources.warehouse import DuckDBWarehouse
from personalization_assets.webhooks.store import EmailEventStore
from personalization_assets_tests.webhooks.signing import sendgrid_events

ASSETS = [assets.raw_email_events, assets.staging_email_events, assets.email_suppressions]


@pytest.fixture
def env(local_env, monkeypatch):
    monkeypatch.delenv("EMAIL_EVENTS_BUS_URL", raising=False)
    monkeypatch.delenv("EMAIL_LANDING_DIR", raising=False)
    landing = local_env / "landing" / "email"
    landing.mkdir(parents=True)
    return local_env, landing


def run(data_dir):
    db = data_dir / "warehouse.duckdb"
    result = dg.materialize(ASSETS, resources={"warehouse": DuckDBWarehouse(database=str(db))})
    assert result.success
    return db, result


def q(db, sql):
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def webhook(events):
    store = EmailEventStore()
    try:
        results = [normalize("sendgrid", e) for e in events]
        store.append([r for r in results if r.__class__.__name__ == "Normalized"],
                     [r for r in results if r.__class__.__name__ == "Rejected"])
    finally:
        store.close()


def write_csv(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)


def test_bus_and_files_to_staging_and_suppressions_without_duplicates(env):
    data_dir, landing = env
    now = int(time.time())
    webhook(sendgrid_events(now) + [{"event": "nope", "email": "x@y.io", "timestamp": now, "sg_event_id": "bad"}])
    export = [{"event": "open", "email": "Dana@Example.com", "timestamp": now - 100, "sg_event_id": "f1", "sg_machine_open": "false"},
              {"event": "open", "email": "dana@example.com", "timestamp": now - 90, "sg_event_id": "f2", "sg_machine_open": "true"},
              {"event": "spamreport", "email": "dana@example.com", "timestamp": now - 80, "sg_event_id": "f3"},
              {"event": "delivered", "email": "no-at-sign", "timestamp": now - 70, "sg_event_id": "f4"},
              {"event": "unsubscribe", "email": "alice.smith@example.com", "timestamp": now - 70, "sg_event_id": "sg-evt-10"}]
    write_csv(landing / "sendgrid_activity_1.csv", export)
    (landing / "mailgun-events.jsonl").write_text(
        json.dumps({"event": "failed", "severity": "permanent", "id": "m1", "recipient": "eve@example.com", "timestamp": now}) + "\n{broken json\n")
    db, result = run(data_dir)

    assert q(db, "select count(*) from raw.email_events") == [(12 + 3 + 1,)]  # sg-evt-10 is in the webhook and the file: once
    types = dict(q(db, "select provider_event_id, type from staging.email_events where provider_event_id like 'f%'"))
    assert types == {"f1": "open", "f2": "open", "f3": "spamreport"}
    machine = dict(q(db, "select provider_event_id, is_machine from staging.email_events where provider_event_id in ('f1', 'f2')"))
    assert machine == {"f1": False, "f2": True}
    suppressed = set(q(db, "select email, reason from staging.email_suppressions"))
    assert suppressed == {("alice.smith@example.com", "hard_bounce"), ("alice.smith@example.com", "spam_report"),
                          ("alice.smith@example.com", "unsubscribe"), ("dana@example.com", "spam_report"),
                          ("eve@example.com", "hard_bounce")}  # the soft bounce (blocked) is not a suppression
    rules = sorted(r for (r,) in q(db, "select rule from quarantine.email_events"))
    assert rules == ["email.invalid", "file.json", "type.unknown"]
    raw_md = result.asset_materializations_for_node("raw__email_events")[0].metadata
    assert raw_md["quarantined"].value == 3 and raw_md["dagster/row_count"].value == 16

    # Re-drop the same file (and a copy under another name), retry the webhook, run again.
    (landing / "sendgrid_activity_1.csv").touch()
    (landing / "sendgrid_copy.csv").write_bytes((landing / "sendgrid_activity_1.csv").read_bytes())
    webhook(sendgrid_events(now))
    db, _ = run(data_dir)
    assert q(db, "select count(*) from raw.email_events") == [(16,)]
    assert q(db, "select count(*) from staging.email_events") == [(16,)]
    assert q(db, "select count(*), sum(attempts) from quarantine.email_events") == [(3, 4)]  # copy re-seen f4
    assert sorted(n for (n,) in q(db, "select name from ops.email_files")) == [
        "mailgun-events.jsonl", "sendgrid_activity_1.csv", "sendgrid_copy.csv"]


def test_landing_sensor_uses_name_and_checksum_run_keys_and_says_what_it_saw(env):
    data_dir, landing = env
    (landing / "sendgrid_a.jsonl").write_text(json.dumps({"event": "open"}) + "\n")
    (landing / "whoknows.csv").write_text("a,b\n1,2\n")
    (landing / ".sendgrid_b.jsonl.part").write_text("partial")
    instance = dg.DagsterInstance.ephemeral()
    first = assets.email_events_sensor(dg.build_sensor_context(instance=instance))
    keys = sorted(r.run_key for r in first.run_requests)
    assert len(keys) == 2 and keys[0].startswith("file:sendgrid_a.jsonl@") and keys[1].startswith("file:whoknows.csv@")
    again = assets.email_events_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert isinstance(again, dg.SkipReason)
    assert "2 export file(s)" in again.skip_message and "whoknows.csv" in again.skip_message
    (landing / "sendgrid_a.jsonl").write_text(json.dumps({"event": "click"}) + "\n")  # corrected file
    webhook(sendgrid_events(int(time.time()))[:2])
    third = assets.email_events_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert sorted(r.run_key.split("@")[0] for r in third.run_requests) == ["bus:1-2", "file:sendgrid_a.jsonl"]
    assert email_events_bus_url().startswith(f"sqlite:///{data_dir}")
