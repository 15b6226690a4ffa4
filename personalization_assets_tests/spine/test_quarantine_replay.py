"""Quarantine and replay round trip on the staging tables: an order for a customer who has not
arrived yet waits in quarantine, moves into staging once the customer is known, and only once."""

from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from personalization_assets.assets import staging
from personalization_assets.partitions import day_of
from personalization_assets.resources import resources_for
from personalization_assets.sources.crm import CUSTOMER_COLUMNS

from personalization_assets_tests.spine.test_partitions import DAY1, _land, _order


def _customer(customer_id: str) -> pd.DataFrame:
    row = {c: None for c in CUSTOMER_COLUMNS}
    row.update(customer_id=customer_id, first_name="ada", last_name="LOVELACE", email=" Ada@Example.org ",
               phone="+44 7911 123456", country="United Kingdom", timezone="Europe/London",
               email_opt_in="true", consent_processing="true",
               created_at=pd.Timestamp("2026-01-05T10:00:00Z"), updated_at=pd.Timestamp("2026-01-05T10:00:00Z"))
    return pd.DataFrame([row])


def _replay(resources) -> dict:
    result = dg.materialize([staging.staging_replay], resources=resources)
    assert result.success
    return result.get_asset_materialization_events()[0].materialization.metadata["moved"].value


def test_an_order_waits_for_its_customer_and_moves_exactly_once(local_env):
    resources = resources_for("local")
    warehouse = resources["warehouse"]
    _land(warehouse, [{**_order("o1", "paid", DAY1), "customer_id": "77"}], DAY1)
    assert dg.materialize([staging.orders], resources=resources, partition_key=day_of(DAY1)).success
    with warehouse.connect() as conn:
        waiting = conn.query("select record_id, rule, status from quarantine.shop_orders")
        assert waiting.to_dict("records") == [{"record_id": "o1", "rule": "orders.unknown_customer", "status": "open"}]
        assert conn.scalar("select count(*) from staging.orders") == 0

    with warehouse.connect() as conn:  # the customer arrives from the CRM
        frame = _customer("77")
        conn.prepare_table("raw", "crm_customers", frame)
        conn.insert_frame("raw", "crm_customers", frame)
    assert dg.materialize([staging.customers], resources=resources).success

    assert _replay(resources) == {"crm_customers": 0, "shop_orders": 1, "events": 0}
    with warehouse.connect() as conn:
        staged = conn.query("select order_id, customer_record_id, is_guest from staging.orders")
        assert staged.to_dict("records") == [{"order_id": "o1", "customer_record_id": "crm:77", "is_guest": False}]
        assert conn.scalar("select status from quarantine.shop_orders where record_id = 'o1'") == "released"
        assert conn.scalar("select count(*) from staging.order_lines") == 1

    assert _replay(resources) == {"crm_customers": 0, "shop_orders": 0, "events": 0}  # nothing moves twice
    with warehouse.connect() as conn:
        assert conn.scalar("select count(*) from staging.orders") == 1
        assert conn.scalar("select count(*) from quarantine.shop_orders") == 1


def test_staged_customers_carry_canonical_values_and_raw_originals(local_env):
    resources = resources_for("local")
    warehouse = resources["warehouse"]
    with warehouse.connect() as conn:
        frame = _customer("5")
        conn.prepare_table("raw", "crm_customers", frame)
        conn.insert_frame("raw", "crm_customers", frame)
    assert dg.materialize([staging.customers], resources=resources).success
    with warehouse.connect() as conn:
        row = conn.query("select * from staging.customers").iloc[0]
    assert (row.first_name, row.first_name_raw, row.last_name) == ("Ada", "ada", "Lovelace")
    assert (row.email, row.email_raw) == ("ada@example.org", " Ada@Example.org ")
    assert (row.phone, row.phone_raw, row.country, row.country_raw) == (
        "+447911123456", "+44 7911 123456", "GB", "United Kingdom")
    assert row.email_opt_in is True or row.email_opt_in == True  # noqa: E712 (numpy bool)
    assert str(row.created_at.tz) in ("UTC", "Etc/UTC")
