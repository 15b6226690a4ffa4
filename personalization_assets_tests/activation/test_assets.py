"""The activation assets materialized on a temporary DuckDB file after the marts they read."""

import dagster as dg
import pandas as pd
import pytest

from personalization_assets.assets import activation, all_definitions, marts
from personalization_assets.resources.warehouse import DuckDBWarehouse
from personalization_assets_tests.marts.conftest import NOW, History, ago

from .servers import BrazeServer, MailchimpServer, WebhookReceiver
from .test_smtp import inbox  # noqa: F401  (fixture)

ASSETS = [marts.customer_profiles, marts.segments, activation.suppression, activation.file_sync,
          activation.webhook_sync, activation.unsubscribes_propagated]


def history() -> History:
    h = History()
    for key in ("anna", "bert", "cleo"):
        h.customer(key, created_at=ago(days=200))
        h.order(key, ago(days=40), lines=(("A", "bags", 1),))
        h.event(key, "Product Added", ago(hours=3), sku="A", value_minor=1500)
    h.customer("noel", email_opt_in=False, created_at=ago(days=200))
    return h


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setattr(marts, "utc_now", lambda: NOW)
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ACTIVATION_WEBHOOK_SECRET", "s")
    monkeypatch.delenv("ACTIVATION_WEBHOOK_URL", raising=False)
    warehouse = DuckDBWarehouse(database=str(tmp_path / "warehouse.duckdb"))
    with warehouse.connect() as conn:
        history().write(conn)
    return warehouse, tmp_path / "data" / "exports"


def metadata(result) -> dict:
    return {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}


def test_segments_sync_to_files_and_webhook_with_counts(env):
    warehouse, exports = env
    with WebhookReceiver("s") as receiver:
        config = {"ops": {"activation__webhook_sync": {"config": {"webhook_url": receiver.url}}}}
        first = dg.materialize(ASSETS, resources={"warehouse": warehouse}, run_config=config)
        with warehouse.connect() as conn:
            members = int(conn.scalar("select count(*) from marts.segment_membership"))
        meta = metadata(first)
        assert members >= 3
        for name in ("file_sync", "webhook_sync"):
            assert meta[name]["added"].value == members and meta[name]["failed"].value == 0
            assert meta[name]["unsubscribes_propagated"].value == 1  # noel's CRM opt-out
        assert sum(len(pd.read_csv(f)) for f in exports.rglob("*.csv")) == members + 1
        assert sum(receiver.changes().values()) == members + 1
        (check,) = first.get_asset_check_evaluations()
        assert check.passed and check.metadata["late"].value == 0

        second = dg.materialize(ASSETS, resources={"warehouse": warehouse}, run_config=config)
        for name in ("file_sync", "webhook_sync"):
            assert metadata(second)[name]["added"].value == metadata(second)[name]["changed"].value == 0
        assert sum(receiver.changes().values()) == members + 1  # nothing resent


def test_webhook_sync_is_skipped_without_a_url_and_pii_tables_come_from_the_specs(env):
    warehouse, _ = env
    result = dg.materialize(ASSETS[:3] + [activation.webhook_sync], resources={"warehouse": warehouse})
    assert metadata(result)["webhook_sync"]["skipped"].value == "no webhook URL configured"
    names = {t.name for t in activation.pii_tables(all_definitions())}
    assert {"core.customers", "raw.events", "activation.suppression", "activation.sync_state"} <= names
    assert {"marts.segment_changes", "marts.segment_membership", "core.customer_crosswalk",
            "quarantine.crm_customers", "quarantine.shop_orders"} <= names  # incl. side tables a spec names


def smtp_and_fires(warehouse, monkeypatch, port: int, fires: str) -> None:
    """Point the SMTP channel at the local inbox on `port` and write `activation.trigger_fires`
    (`fires`: SQL value rows of fire_key, trigger, customer_id, outcome)."""
    for name, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_FROM": "Shop <news@shop.example>",
                        "UNSUBSCRIBE_BASE_URL": "https://shop.example/unsubscribe", "UNSUBSCRIBE_SECRET": "u"}.items():
        monkeypatch.setenv(name, value)
    with warehouse.connect() as conn:
        conn.execute("create schema if not exists activation")
        conn.execute("create table activation.trigger_fires (fire_key varchar, trigger varchar, customer_id varchar, outcome varchar)")
        conn.execute(f"insert into activation.trigger_fires values {fires}")


def test_triggered_emails_go_out_once_over_smtp(env, inbox, monkeypatch):
    warehouse, _ = env
    handler, port = inbox
    smtp_and_fires(warehouse, monkeypatch, port, "('f1', 'cart_abandonment', 'anna', 'fire'), "
                   "('f2', 'cart_abandonment', 'bert', 'suppress'), ('f3', 'cart_abandonment', 'noel', 'fire')")
    assets = [marts.customer_profiles, marts.segments, marts.personalization_payloads, activation.suppression,
              activation.triggered_emails]
    for _ in range(2):  # the second run finds every fire already sent
        result = dg.materialize(assets, resources={"warehouse": warehouse})
    assert metadata(result)["triggered_emails"]["sent"].value == 0
    ((to, msg),) = handler.messages  # bert's fire was a suppress decision; noel opted out
    assert to == ["anna@example.com"] and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "You left these in your cart" in msg.get_body(("plain",)).get_content()


def test_dry_run_reports_the_plan_and_sends_nothing(env):
    warehouse, exports = env
    config = {"ops": {"activation__file_sync": {"config": {"dry_run": True}}}}
    result = dg.materialize(ASSETS[:4], resources={"warehouse": warehouse}, run_config=config)
    with warehouse.connect() as conn:
        members = int(conn.scalar("select count(*) from marts.segment_membership"))
        assert conn.scalar("select count(*) from activation.sync_state") == 0
    assert metadata(result)["file_sync"]["added"].value == members and metadata(result)["file_sync"]["dry_run"].value
    assert not exports.exists() or not any(exports.rglob("*.csv"))


def test_braze_and_mailchimp_assets_sync_when_configured(env, monkeypatch):
    warehouse, _ = env
    assets = ASSETS[:3] + [activation.braze_sync, activation.mailchimp_sync]
    skipped = metadata(dg.materialize(assets, resources={"warehouse": warehouse}))
    assert skipped["braze_sync"]["skipped"].value.startswith("not configured: BRAZE_REST_URL")
    with BrazeServer("bk") as braze, MailchimpServer("mk-us6", "L1") as chimp:
        for name, value in {"BRAZE_REST_URL": braze.url, "BRAZE_API_KEY": "bk", "MAILCHIMP_API_KEY": "mk-us6",
                            "MAILCHIMP_LIST_ID": "L1", "MAILCHIMP_SEGMENT_IDS": '{"cart_abandoners": "9"}',
                            "MAILCHIMP_BASE_URL": chimp.url + "/3.0"}.items():
            monkeypatch.setenv(name, value)
        meta = metadata(dg.materialize(assets, resources={"warehouse": warehouse}))
        with warehouse.connect() as conn:
            members = conn.query("select segment, customer_key from marts.segment_membership")
    carts = {f"{k}@example.com" for k in members.loc[members["segment"] == "cart_abandoners", "customer_key"]}
    assert carts and chimp.segments["9"] == carts and meta["mailchimp_sync"]["added"].value == len(carts)
    assert meta["braze_sync"]["added"].value == len(members) and meta["braze_sync"]["failed"].value == 0
    assert {uid: user["segments"] for uid, user in braze.users.items() if user["segments"]} == \
        {k: set(g["segment"]) for k, g in members.groupby("customer_key")}
    assert braze.users["noel"]["email_subscribe"] == "unsubscribed"  # the CRM opt-out, propagated
    assert chimp.members["noel@example.com"] == "unsubscribed"
