"""The whole graph on a temporary DuckDB file, checked against the generator's own truth."""

from datetime import datetime

import dagster as dg
import pandas as pd
import pytest

from personalization_assets.demo.run import frame_of, run_demo
from personalization_assets.email_events.demo import generate_email_events


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSONALIZATION_DATA_DIR", str(data_dir))
        mp.setenv("DAGSTER_DEPLOYMENT", "local")
        for var in ("CRM_DATABASE_URL", "EVENT_BUS_URL", "ORDERS_API_URL", "PERSONALIZATION_DUCKDB_PATH"):
            mp.delenv(var, raising=False)
        instance = dg.DagsterInstance.ephemeral()
        first = run_demo(seed=11, scale=0.1, instance=instance, keep_records=True)
        assert first.success, first.errors
        tables = {name: frame_of(name) for name in first.table_rows}
        quarantine = {name: frame_of(f"quarantine.{name}") for name in first.quarantined}
        second = run_demo(seed=11, scale=0.1, instance=instance)
        assert second.success, second.errors
        yield first, second, tables, quarantine


def test_every_source_row_is_staged_or_quarantined(demo):
    first, _, tables, quarantine = demo
    data = first.data
    assert len(tables["raw.crm_customers"]) == len(data.customers)
    assert len(tables["staging.customers"]) == len(data.customers) - len(data.bad_customers)
    assert set(quarantine["crm_customers"]["record_id"]) == {f"crm:{c}" for c in data.bad_customers}

    assert len(tables["raw.shop_orders"]) == len(data.orders)
    assert len(tables["staging.orders"]) == len(data.orders) - len(data.bad_orders)
    assert set(quarantine["shop_orders"]["record_id"]) == data.bad_orders
    lines = sum(len(o["lines"]) for o in data.orders if o["order_id"] not in data.bad_orders)
    assert len(tables["staging.order_lines"]) == lines

    assert len(tables["raw.events"]) == len(data.events)
    assert len(tables["staging.events"]) == len(data.events) - len(data.bad_events)
    assert set(quarantine["events"]["record_id"]) == data.bad_events
    assert (quarantine["events"]["message"].str.len() > 0).all()


def test_golden_customers_are_the_real_persons(demo):
    first, _, tables, _ = demo
    data = first.data
    valid = [c["customer_id"] for c in data.customers if c["customer_id"] not in data.bad_customers]
    persons = {data.person_of_customer[c] for c in valid}
    assert len(tables["core.customers"]) == len(persons)
    crosswalk = tables["core.customer_crosswalk"]
    person_of_key = {}
    for record_id, key in zip(crosswalk["record_id"], crosswalk["customer_key"]):
        person_of_key.setdefault(key, set()).add(data.person_of_customer[int(record_id.split(":")[1])])
    assert all(len(p) == 1 for p in person_of_key.values()), "a golden record mixes two persons"


def test_cart_abandoners_match_the_seeded_abandoned_carts(demo):
    first, _, tables, _ = demo
    data = first.data
    crm = {c["customer_id"]: c for c in data.customers}
    cart_time = {}
    for e in data.events:
        cart = (e.get("properties") or {}).get("cart_id")
        if e.get("event") == "Product Added" and cart in data.abandoned_carts:
            cart_time[cart] = max(cart_time.get(cart, ""), e["timestamp"])
    ordered_after = set()
    for o in data.orders:
        cid = o["customer_id"]
        if cid is None or o["order_id"] in data.bad_orders:
            continue
        pid = data.person_of_customer[int(cid)]
        for cart, cpid in data.abandoned_carts.items():
            when = pd.Timestamp(o["created_at"])
            if cpid == pid and when > pd.Timestamp(cart_time[cart]):
                ordered_after.add(cart)
    expected_persons = set()
    for cart, pid in data.abandoned_carts.items():
        record = next(c for c in data.customers if data.person_of_customer[c["customer_id"]] == pid)
        if cart not in ordered_after and record["email_opt_in"] and record["consent_processing"]:
            expected_persons.add(pid)
    crosswalk = tables["core.customer_crosswalk"]
    person_of_key = {k: data.person_of_customer[int(r.split(":")[1])]
                     for r, k in zip(crosswalk["record_id"], crosswalk["customer_key"])}
    members = tables["marts.segment_membership"]
    abandoners = {person_of_key[k] for k in members[members["segment"] == "cart_abandoners"]["customer_key"]}
    assert expected_persons, "the seed must produce abandoned carts"
    # People who unsubscribed, complained or hard-bounced in the seeded email history may be
    # suppressed (by address); everyone else must be there, and nobody who did not abandon.
    suppressed = _suppressed_persons(data, seed=11)
    assert expected_persons - suppressed <= abandoners <= expected_persons


def _suppressed_persons(data, seed):
    people = [c for c in data.customers if c["customer_id"] not in data.bad_customers]
    events = generate_email_events(people, seed, now=data.anchor)
    emails = {e["email"].lower() for e in events
              if e["event"] in {"unsubscribe", "spamreport"} or (e["event"] == "bounce" and e.get("type") == "bounce")}
    return {data.person_of_customer[c["customer_id"]] for c in people if c["email"].lower() in emails}


def test_unsubscribed_customers_are_never_in_a_segment(demo):
    _, _, tables, _ = demo
    golden = tables["core.customers"].set_index("customer_key")
    members = tables["marts.segment_membership"]
    assert len(members) > 0
    sendable = golden.loc[members["customer_key"]]
    assert sendable["email_opt_in"].all() and sendable["consent_processing"].all()


def test_running_the_demo_twice_gives_the_same_tables(demo):
    first, second, _, _ = demo
    assert second.table_rows == first.table_rows
    assert second.quarantined == first.quarantined
    assert second.segment_sizes == first.segment_sizes
