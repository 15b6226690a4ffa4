"""Sticky suppression, the one-click endpoint (RFC 8058), and propagation to destinations."""

from datetime import timedelta

import pandas as pd
from starlette.testclient import TestClient

from personalization_assets.activation import suppression
from personalization_assets.activation.destinations import SignedWebhook
from personalization_assets.activation.unsubscribe import create_unsubscribe_app, make_token
from personalization_assets.email_events.staging import events_frame, suppressions
from personalization_assets.audiences.suppression import suppressed_customers
from personalization_assets_tests.marts.conftest import NOW, History, ago

from .servers import WebhookReceiver

SECRET = "unsub-secret"


def crm(duck, **opt_in) -> None:
    h = History()
    h.customer("anna")
    for key, value in opt_in.items():
        h.customer(key, email_opt_in=value)
    h.write(duck)


def stage_email_events(duck, events) -> None:
    frame = events_frame([e.to_record() for e in events])
    for name, table in (("email_events", frame), ("email_suppressions", suppressions(frame))):
        duck.prepare_table("staging", name, table)
        duck.replace_frame("staging", name, table)


def listed(duck) -> dict[str, str]:
    found = suppressed_customers(duck)  # the marts' own view, which keeps people out of segments
    return dict(zip(found["customer_key"], found["reason"]))


def test_crm_reimport_as_subscribed_stays_unsubscribed(duck):
    crm(duck, noel=False)
    suppression.write(duck, suppression.build(duck, NOW))
    duck.execute("update core.customers set email_opt_in = true where customer_key = 'noel'")  # the CRM re-import
    rebuilt = suppression.build(duck, NOW + timedelta(days=1))
    suppression.write(duck, rebuilt)
    (entry,) = rebuilt.to_dict("records")
    assert (entry["email"], entry["reason"], entry["source"]) == ("noel@example.com", "unsubscribed", "crm")
    assert entry["recorded_at"] == NOW  # the first time: stickiness keeps the original entry
    assert listed(duck) == {"noel": "unsubscribed"}


def test_only_an_explicit_opt_in_newer_than_the_unsubscribe_lifts_it(duck):
    crm(duck, noel=False)
    suppression.write(duck, suppression.build(duck, NOW))
    duck.execute("update core.customers set email_opt_in = true where customer_key = 'noel'")
    from personalization_assets.email_events.model import Normalized
    older = Normalized("sendgrid", "e1", "group_resubscribe", "noel@example.com", ago(days=3))
    stage_email_events(duck, [older])
    assert len(suppression.build(duck, NOW)) == 1  # an opt-in older than the unsubscribe changes nothing
    newer = Normalized("sendgrid", "e2", "group_resubscribe", "noel@example.com", NOW + timedelta(hours=1))
    stage_email_events(duck, [older, newer])
    suppression.write(duck, suppression.build(duck, NOW + timedelta(hours=2)))
    assert listed(duck) == {}


def test_one_click_unsubscribe_reaches_the_list_and_the_segments(duck):
    crm(duck)
    recorded = []
    client = TestClient(create_unsubscribe_app(SECRET, recorded.append, clock=lambda: NOW))
    token = make_token(SECRET, "Anna@Example.com")
    assert client.get("/unsubscribe", params={"t": token}).status_code == 200 and not recorded  # GET never unsubscribes
    assert client.post("/unsubscribe", params={"t": token[:-2] + "xx"}, content="List-Unsubscribe=One-Click").status_code == 400
    assert client.post("/unsubscribe", params={"t": token}, content="something else").status_code == 400
    for _ in range(2):  # a mailbox provider may retry: one event id, stored once downstream
        answer = client.post("/unsubscribe", params={"t": token}, content="List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200
    assert len({e.provider_event_id for e in recorded}) == 1 and recorded[0].email == "anna@example.com"
    stage_email_events(duck, recorded)
    suppression.write(duck, suppression.build(duck, NOW))
    assert listed(duck) == {"anna": "unsubscribed"}
    entries = duck.query("select email, reason, source from activation.suppression")
    assert entries.to_dict("records") == [{"email": "anna@example.com", "reason": "unsubscribed", "source": "one_click"}]


def test_propagation_and_the_two_day_check(duck, transport):
    crm(duck, noel=False, olga=False)
    suppression.write(duck, suppression.build(duck, ago(days=3)))
    with WebhookReceiver("s") as receiver:
        hook = SignedWebhook(receiver.url, "s", transport)
        suppression.request_propagation(duck, ["webhook", "braze"])
        assert suppression.propagate(duck, hook, NOW) == (2, 0)
        assert suppression.propagate(duck, hook, NOW) == (0, 0)  # nothing pending twice
    sent = sorted((r["op"], r["email"]) for r in receiver.applied.values())
    assert sent == [("unsubscribe", "noel@example.com"), ("unsubscribe", "olga@example.com")]
    late = suppression.unpropagated(duck, ["webhook", "braze"], NOW)
    assert sorted(zip(late["email"], late["destination"])) == [("noel@example.com", "braze"), ("olga@example.com", "braze")]
    assert suppression.unpropagated(duck, ["webhook"], NOW).empty
    assert suppression.unpropagated(duck, ["braze"], ago(days=2)).empty  # not yet two days old then
    assert pd.Timestamp(late["requested_at"].iloc[0]) == pd.Timestamp(ago(days=3))


def test_an_identity_merge_cannot_resubscribe(duck):
    crm(duck, noel=False)
    suppression.write(duck, suppression.build(duck, NOW))
    # Identity resolution merges noel's record into a new customer whose golden address is another
    # one of theirs, opted in: the unsubscribe must follow the person to the new key.
    duck.execute("delete from core.customers where customer_key = 'noel'")
    duck.execute("insert into core.customers (customer_key, email, email_opt_in, consent_processing) "
                 "values ('noel2', 'noel.work@example.com', true, true)")
    duck.execute("alter table core.customer_crosswalk add column previous_customer_key varchar")
    duck.execute("update core.customer_crosswalk set customer_key = 'noel2', previous_customer_key = 'noel' "
                 "where customer_key = 'noel'")
    suppression.write(duck, suppression.build(duck, NOW + timedelta(days=1)))
    assert listed(duck)["noel2"] == "unsubscribed"
    carried = duck.query("select customer_key, reason, recorded_at from activation.suppression where source = 'identity_merge'")
    assert carried.to_dict("records") == [{"customer_key": "noel2", "reason": "unsubscribed", "recorded_at": NOW}]


def test_deployed_endpoint_appends_to_the_email_events_bus(local_env, monkeypatch):
    from personalization_assets.activation.unsubscribe import app_from_env
    from personalization_assets.bus import open_bus
    from personalization_assets.email_events.bus import email_events_bus_url

    monkeypatch.setenv("UNSUBSCRIBE_SECRET", SECRET)
    monkeypatch.delenv("EMAIL_EVENTS_BUS_URL", raising=False)
    token = make_token(SECRET, "zoe@example.com")
    with TestClient(app_from_env()) as client:  # its shutdown closes the e-mail events bus
        for _ in range(2):
            assert client.post("/unsubscribe", params={"t": token}, content="List-Unsubscribe=One-Click").status_code == 200
    bus = open_bus(email_events_bus_url())
    try:
        records = bus.read(0)
    finally:
        bus.close()
    assert [(r.event["type"], r.event["email"], r.event["provider"]) for r in records] == [
        ("unsubscribe", "zoe@example.com", "one_click")]  # the retried POST is stored once


def _records_with_listed_addresses(conn) -> None:
    staged = pd.DataFrame({"record_id": ["crm:1", "crm:2", "shop:3", "crm:4"],
                           "email": ["Noel.Work@Example.com", "noel@example.com", "noel@example.com", None]})
    crosswalk = pd.DataFrame({"record_id": ["crm:1", "crm:2", "shop:3", "crm:4"],
                              "customer_key": ["noel2", "noel2", "noel3", "anna"]})
    for schema, name, frame in (("staging", "customers", staged), ("core", "customer_crosswalk", crosswalk)):
        conn.prepare_table(schema, name, frame)
        conn.replace_frame(schema, name, frame)
    found = suppression._records_with_addresses(conn, ["noel.work@example.com", "noel@example.com", "nobody@x.org"])
    assert sorted(zip(found["email"], found["customer_key"])) == [
        ("noel.work@example.com", "noel2"), ("noel@example.com", "noel2"), ("noel@example.com", "noel3")]
    assert suppression._records_with_addresses(conn, []).empty


def test_an_unsubscribed_address_is_looked_up_on_the_source_records_on_duckdb(duck):
    """Only the listed addresses' source records come back (not every staged address), compared
    lower-cased, on DuckDB (one registered relation) and on Snowflake's SQL (bound chunks)."""
    _records_with_listed_addresses(duck)


def test_an_unsubscribed_address_is_looked_up_on_the_source_records_on_fakesnow():
    from personalization_assets_tests.marts.conftest import fakesnow_connection

    with fakesnow_connection() as snow:
        _records_with_listed_addresses(snow)
