"""The quarantine replay re-stages only the open quarantined events, never the days they arrived
on: an event from the future waits in quarantine, moves once its time has come, and the other
rows of its day are not touched (a hand-made change to one of them survives the replay)."""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd

from personalization_assets import clock
from personalization_assets.assets import staging
from personalization_assets.partitions import day_of
from personalization_assets.resources import resources_for

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _raw_event(i: int, at: datetime) -> dict:
    payload = {"type": "track", "event": "Product Viewed", "userId": f"u{i}", "messageId": f"m{i}",
               "timestamp": at.isoformat(), "properties": {"sku": "S1"}}
    return {"message_id": f"m{i}", "bus_offset": i, "received_at": pd.Timestamp(NOW), "payload": json.dumps(payload)}


def _replay(resources) -> dict:
    result = dg.materialize([staging.staging_replay], resources=resources)
    assert result.success
    return result.get_asset_materialization_events()[0].materialization.metadata["moved"].value


def test_only_the_open_event_is_replayed_and_its_day_is_left_alone(local_env):
    resources = resources_for("local")
    warehouse = resources["warehouse"]
    future = NOW + timedelta(days=2)
    frame = pd.DataFrame([_raw_event(1, NOW), _raw_event(2, NOW), _raw_event(3, future)])
    with warehouse.connect() as conn:
        conn.prepare_table("raw", "events", frame)
        conn.insert_frame("raw", "events", frame)
    assert dg.materialize([staging.events], resources=resources, partition_key=day_of(NOW)).success
    with warehouse.connect() as conn:
        assert conn.scalar("select status from quarantine.events where record_id = 'm3'") == "open"
        conn.execute("update staging.events set sku = 'EDITED' where message_id = 'm1'")

    assert _replay(resources)["events"] == 0  # still in the future: stays open
    with clock.pinned(future + timedelta(hours=1)):
        assert _replay(resources)["events"] == 1
    with warehouse.connect() as conn:
        staged = dict(conn.query("select message_id, sku from staging.events").itertuples(index=False))
        assert staged == {"m1": "EDITED", "m2": "S1", "m3": "S1"}  # m1 kept: its day was not re-staged
        assert conn.scalar("select status from quarantine.events where record_id = 'm3'") == "released"
    with clock.pinned(future + timedelta(hours=1)):
        assert _replay(resources)["events"] == 0  # nothing moves twice
    with warehouse.connect() as conn:
        assert conn.scalar("select count(*) from staging.events") == 3


def test_only_the_open_order_is_replayed_and_its_day_is_left_alone(local_env):
    from personalization_assets_tests.spine.test_partitions import DAY1, _land, _order
    from personalization_assets_tests.spine.test_quarantine_replay import _customer

    resources = resources_for("local")
    warehouse = resources["warehouse"]
    _land(warehouse, [{**_order("o1", "paid", DAY1), "customer_id": "77"}, _order("o2", "paid", DAY1)], DAY1)
    assert dg.materialize([staging.orders], resources=resources, partition_key=day_of(DAY1)).success
    with warehouse.connect() as conn:
        assert conn.scalar("select status from quarantine.shop_orders where record_id = 'o1'") == "open"
        conn.execute("update staging.orders set email = 'edited@example.org' where order_id = 'o2'")
        frame = _customer("77")  # the customer arrives
        conn.prepare_table("raw", "crm_customers", frame)
        conn.insert_frame("raw", "crm_customers", frame)
    assert dg.materialize([staging.customers], resources=resources).success

    assert _replay(resources)["shop_orders"] == 1
    with warehouse.connect() as conn:
        staged = dict(conn.query("select order_id, email from staging.orders").itertuples(index=False))
        assert staged == {"o1": "o1@example.org", "o2": "edited@example.org"}  # o2's day was not re-staged
        assert conn.scalar("select count(*) from staging.order_lines") == 2
    assert _replay(resources)["shop_orders"] == 0
    with warehouse.connect() as conn:
        assert conn.scalar("select count(*) from staging.orders") == 2
        assert conn.scalar("select count(*) from staging.order_lines") == 2
