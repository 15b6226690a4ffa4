"""Done-when of issue 11: an address hard-bounced through a signed webhook leaves every sendable
segment on the next run (real collector over loopback, real assets, real segment SQL on DuckDB)."""

from __future__ import annotations

import json
import time

import dagster as dg
import duckdb
import requests

from personalization_assets.assets import email_events as assets
from personalization_assets.audiences import suppression
from personalization_assets.audiences.membership import load_segments, run_segments
from personalization_assets.collector import CollectorSettings, create_app
from personalization_assets.marts.profiles import build_profiles, write_profiles
from personalization_assets.resources.warehouse import DuckDBWarehouse
from personalization_assets.warehouse import WarehouseConnection
from personalization_assets_tests.marts.conftest import NOW, History, ago
from personalization_assets_tests.webhooks.signing import SendGridKeys
from personalization_assets_tests.asgi import serving

SEGMENTS = load_segments()


def segment_run(db) -> set[tuple[str, str]]:
    raw = duckdb.connect(str(db))
    try:
        conn = WarehouseConnection(raw, "duckdb")
        write_profiles(conn, build_profiles(conn, NOW).frame)
        run_segments(conn, SEGMENTS, NOW)
        return set(conn.query("select segment, customer_key from marts.segment_membership").itertuples(index=False))
    finally:
        raw.close()


def test_hard_bounce_webhook_removes_the_address_from_sendable_segments(tmp_path, monkeypatch):
    db = tmp_path / "warehouse.duckdb"
    history = History()
    for key in ("bob", "carol"):
        history.customer(key, created_at=ago(days=2))  # both new subscribers
    raw = duckdb.connect(str(db))
    history.write(WarehouseConnection(raw, "duckdb"))
    raw.close()
    before = segment_run(db)
    assert ("new_subscribers", "bob") in before and ("new_subscribers", "carol") in before

    email_bus = f"sqlite:///{tmp_path}/email_events.db?table=email_events"
    monkeypatch.setenv("EMAIL_EVENTS_BUS_URL", email_bus)
    monkeypatch.setenv("EMAIL_LANDING_DIR", str(tmp_path / "landing"))
    keys = SendGridKeys()
    settings = CollectorSettings(bus_url=f"sqlite:///{tmp_path}/events.db",
                                 webhooks={"bus_url": email_bus, "sendgrid": {"public_key": keys.public_key}})
    with serving(create_app(settings), "the collector") as port:
        url = f"http://127.0.0.1:{port}"
        now = int(time.time())
        body = json.dumps([
            {"event": "bounce", "type": "bounce", "email": "Bob@Example.com", "timestamp": now, "sg_event_id": "b-1",
             "reason": "550 5.1.1 user unknown"},
            {"event": "bounce", "type": "blocked", "email": "carol@example.com", "timestamp": now, "sg_event_id": "b-2",
             "reason": "452 mailbox full"}]).encode()
        assert requests.post(url + "/webhooks/sendgrid", data=body, headers=keys.headers(body, now), timeout=10).status_code == 200

    assert dg.materialize([assets.raw_email_events, assets.staging_email_events, assets.email_suppressions],
                          resources={"warehouse": DuckDBWarehouse(database=str(db))}).success
    after = segment_run(db)
    assert not [s for s, k in after if k == "bob"], "a hard-bounced address stayed in a sendable segment"
    assert ("new_subscribers", "carol") in after  # a soft bounce does not suppress
    with duckdb.connect(str(db), read_only=True) as conn:
        changes = conn.execute("select segment, change from marts.segment_changes where customer_key = 'bob'").fetchall()
        assert sorted(changes) == [("new_subscribers", "entered"), ("new_subscribers", "exited")]
        assert conn.execute("select email, reason from staging.email_suppressions").fetchall() == [
            ("bob@example.com", "hard_bounce")]
    raw = duckdb.connect(str(db))
    try:
        reasons = dict(suppression.suppressed_customers(WarehouseConnection(raw, "duckdb")).itertuples(index=False))
    finally:
        raw.close()
    assert reasons.get("bob") == "bounced" and "carol" not in reasons
