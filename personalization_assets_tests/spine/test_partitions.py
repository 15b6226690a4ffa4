"""Daily arrival partitions of orders and events: backfill one day or a range, never duplicate."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd

from personalization_assets.assets import event_stream, raw, staging
from personalization_assets.bus import open_bus
from personalization_assets.partitions import ARRIVAL_DAYS, day_of, range_tags, recent_days_tags
from personalization_assets.resources import resources_for
from personalization_assets.resources.sources import EventBusResource

DAY1, DAY2 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc), datetime(2026, 3, 2, 12, tzinfo=timezone.utc)


def _order(order_id: str, status: str, updated: datetime) -> dict:
    return {"order_id": order_id, "customer_id": None, "email": f"{order_id}@example.org", "status": status,
            "currency": "EUR", "total": "20.00", "created_at": "2026-03-01T09:00:00+00:00",
            "updated_at": updated.isoformat(), "cart_id": None, "checkout_id": None,
            "lines": [{"line_no": 1, "sku": "SKU-1", "name": "Mug", "category": "kitchen",
                       "quantity": 2, "unit_price": "10.00"}]}


def _land(warehouse, orders: list[dict], loaded_at: datetime) -> None:
    """What `raw.shop_orders` does, with a chosen arrival time."""
    frame, _ = raw.split_orders(orders)
    frame["loaded_at"] = pd.Series(pd.Timestamp(loaded_at), index=frame.index, dtype="datetime64[ns, UTC]")
    with warehouse.connect() as conn:
        conn.prepare_table("raw", "shop_orders", frame)
        with conn.transaction():
            conn.upsert_frame("raw", "shop_orders", frame, ["order_id"])


def _staged(warehouse) -> pd.DataFrame:
    with warehouse.connect() as conn:
        return conn.query("select order_id, status, loaded_at from staging.orders order by order_id")


def test_orders_stage_by_arrival_day_and_an_update_moves_the_order(local_env):
    resources = resources_for("local")
    warehouse = resources["warehouse"]
    _land(warehouse, [_order("o1", "paid", DAY1), _order("o2", "paid", DAY1)], DAY1)
    assert dg.materialize([staging.orders], resources=resources, partition_key=day_of(DAY1)).success
    assert _staged(warehouse)["order_id"].tolist() == ["o1", "o2"]

    _land(warehouse, [_order("o1", "shipped", DAY2)], DAY2)  # o1 changes the next day
    assert dg.materialize([staging.orders], resources=resources, partition_key=day_of(DAY2)).success
    staged = _staged(warehouse)
    assert staged["order_id"].tolist() == ["o1", "o2"]  # moved, not duplicated
    assert staged.set_index("order_id").loc["o1", "status"] == "shipped"
    assert day_of(staged.set_index("order_id").loc["o1", "loaded_at"]) == day_of(DAY2)
    with warehouse.connect() as conn:
        assert conn.scalar("select count(*) from staging.order_lines where order_id = 'o1'") == 1

    # Backfilling day 1 again re-stages only what arrived then: o1 stays in day 2, nothing doubles.
    assert dg.materialize([staging.orders], resources=resources, partition_key=day_of(DAY1)).success
    assert _staged(warehouse)["status"].tolist() == ["shipped", "paid"]


def test_a_range_backfill_is_one_run_over_every_day(local_env):
    resources = resources_for("local")
    warehouse = resources["warehouse"]
    _land(warehouse, [_order("a", "paid", DAY1)], DAY1)
    _land(warehouse, [_order("b", "paid", DAY2)], DAY2)
    result = dg.materialize([staging.orders], resources=resources,
                            tags=range_tags(day_of(DAY1), day_of(DAY2)))
    assert result.success
    materialized = [e.partition for e in result.get_asset_materialization_events()
                    if e.asset_key == dg.AssetKey(["staging", "orders"])]
    assert sorted(materialized) == [day_of(DAY1), day_of(DAY2)]
    assert _staged(warehouse)["order_id"].tolist() == ["a", "b"]
    assert staging.orders.backfill_policy == dg.BackfillPolicy.single_run()


def test_sensor_stages_from_the_first_waiting_events_day(tmp_path):
    url = f"sqlite:///{tmp_path}/events.db"
    with open_bus(url) as bus:
        bus.append([{"type": "track", "event": "Product Viewed", "userId": "u1", "messageId": "m1",
                     "timestamp": datetime.now(timezone.utc).isoformat()}])
    resources = {"event_bus": EventBusResource(url=url)}
    with dg.DagsterInstance.ephemeral() as instance:
        result = event_stream.event_stream_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    (request,) = result.run_requests
    assert request.partition_key == day_of(datetime.now(timezone.utc))  # arrived today: today only


def test_partitions_are_daily_utc_through_today():
    today = day_of(datetime.now(timezone.utc))
    assert ARRIVAL_DAYS.get_last_partition_key() == today
    tags = recent_days_tags(datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc))
    assert tags == range_tags("2025-12-31", "2026-01-01")
    assert day_of(datetime(2026, 1, 1, 23, 59)) == "2026-01-01"  # naive means UTC
    assert day_of(datetime(2026, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))) == "2026-01-02"


def test_schedules_restage_yesterday_and_today():
    from personalization_assets import schedules

    when = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)
    for schedule in (schedules.hourly_segments, schedules.daily_profiles):
        data = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=when))
        (request,) = data.run_requests
        assert request.tags["dagster/asset_partition_range_start"] == "2026-03-01"
        assert request.tags["dagster/asset_partition_range_end"] == "2026-03-02"
