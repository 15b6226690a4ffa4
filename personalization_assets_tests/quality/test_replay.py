"""Quarantine -> fix -> replay moves -> replay again moves nothing, on a temp DuckDB and SQLite bus."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pytest

from personalization_assets.assets.event_stream import collector_quarantine, quarantine_rows
from personalization_assets.assets.quality import RATE_CHECKS, collector_replayed
from personalization_assets.assets.raw import events as raw_events
from personalization_assets.bus import open_bus, open_quarantine_bus
from personalization_assets.collector.intake import quarantine_record, split
from personalization_assets.collector.validate import Violation
from personalization_assets.quality import quarantine
from personalization_assets.quality.replay import replay_collector_quarantine, revalidate
from personalization_assets.resources.sources import EventBusResource
from personalization_assets.resources.warehouse import DuckDBWarehouse

NOW = datetime.now(timezone.utc)


def track(message_id: str, **properties) -> dict:
    return {"type": "track", "event": "Product Viewed", "messageId": message_id, "anonymousId": "anon-1",
            "timestamp": (NOW - timedelta(minutes=1)).isoformat(), "properties": properties}


@pytest.fixture
def setup(tmp_path):
    url = f"sqlite:///{tmp_path}/events.db"
    bus, qbus = open_bus(url), open_quarantine_bus(url)
    warehouse = DuckDBWarehouse(database=str(tmp_path / "warehouse.duckdb"))
    yield url, bus, qbus, warehouse
    bus.close()
    qbus.close()


def collect(bus, qbus, events: list[dict]) -> None:
    """What the collector does with a request: split, then append to the bus and its quarantine."""
    accepted, quarantined = split(events, {}, NOW, "/v1/batch")
    bus.append(accepted)
    qbus.append(quarantined)


def load_quarantine(qbus, warehouse) -> None:
    with warehouse.connect() as conn:
        quarantine.prepare_table(conn, "collector")
        rows = quarantine_rows(qbus.read(0, 1000)).assign(source="collector")
        merged = quarantine.merge(conn.query("select * from quarantine.collector"), rows, now=NOW)
        conn.replace_frame("quarantine", "collector", merged)


def table(warehouse) -> pd.DataFrame:
    with warehouse.connect() as conn:
        return conn.query("select * from quarantine.collector").set_index("record_id")


def lenient(event) -> list:
    """A 'fixed' tracking plan: only the structural rule that an event is an object."""
    return [] if isinstance(event, dict) else [Violation("event_not_object", "not an object")]


def needs_identity(event) -> list:
    """A 'fixed' tracking plan that no longer types properties, but still wants an identity."""
    return [] if isinstance(event, dict) and event.get("anonymousId") else [Violation("identity", "no identity")]


def test_round_trip_fix_replay_then_replay_again_moves_nothing(setup):
    _, bus, qbus, warehouse = setup
    collect(bus, qbus, [track("ok-1", sku="A"), track("bad-price", sku="A", price="free"),
                        {"type": "track", "event": "Product Viewed", "properties": {}}])  # no identity
    assert bus.last_offset() == 1
    load_quarantine(qbus, warehouse)
    assert set(table(warehouse)["status"]) == {"open"} and len(table(warehouse)) == 2

    with warehouse.connect() as conn:  # nothing was fixed: nothing moves, attempts count up
        report = replay_collector_quarantine(conn, bus, now=NOW + timedelta(minutes=1))
    assert (report.checked, report.moved) == (2, 0) and sum(report.still_failing.values()) == 2
    assert bus.last_offset() == 1
    assert (table(warehouse)["attempts"] == 2).all()

    with warehouse.connect() as conn:  # the rule fix: only the price type was wrong
        report = replay_collector_quarantine(conn, bus, now=NOW + timedelta(minutes=2), validator=needs_identity)
    assert (report.checked, report.moved, report.already_on_bus) == (2, 1, 0)
    assert report.still_failing == {"identity": 1}
    moved = bus.read(1, 10)
    assert [r.message_id for r in moved] == ["bad-price"]
    assert moved[0].event["receivedAt"] and moved[0].event["properties"]["price"] == "free"
    rows = table(warehouse)
    assert rows.loc["bad-price", "status"] == "replayed"
    assert rows.loc["bad-price", "released_at"] == pd.Timestamp(NOW + timedelta(minutes=2))
    assert (rows.drop(index="bad-price")["status"] == "open").all()

    with warehouse.connect() as conn:
        again = replay_collector_quarantine(conn, bus, now=NOW + timedelta(minutes=3), validator=needs_identity)
    assert (again.checked, again.moved) == (1, 0)  # only the identity-less event is still open
    assert [r.message_id for r in bus.read(1, 10)].count("bad-price") == 1
    assert len(table(warehouse)) == 2


def test_event_without_message_id_keeps_a_stable_id_across_replays(setup):
    _, bus, _, _ = setup
    record = quarantine_record({"type": "track", "event": "X", "anonymousId": "a"}, [Violation("old", "old rule")],
                               NOW, "/v1/track")
    rows = quarantine_rows([type("R", (), {"event": record, "message_id": record["messageId"]})()])
    rows = rows.assign(first_seen=pd.Timestamp(NOW), last_seen=pd.Timestamp(NOW))
    first, second = revalidate(rows, validator=lenient), revalidate(rows, validator=lenient)
    assert first.events[0]["messageId"] == second.events[0]["messageId"] == record["messageId"]
    assert bus.append_detailed(first.events + second.events)[1].duplicate


def test_unreadable_payload_stays_quarantined_with_reason():
    rows = pd.DataFrame({"record_id": ["r1"], "raw_payload": ["{not json"], "first_seen": [pd.Timestamp(NOW)],
                         "last_seen": [pd.Timestamp(NOW)]})
    result = revalidate(rows, validator=lenient)
    assert result.events == [] and list(result.rejected["rule"]) == ["payload:json"]


def test_dagster_replay_asset_moves_once_and_raw_events_ingests_once(setup):
    url, bus, qbus, warehouse = setup
    # quarantined under an older plan; the current tracking plan accepts this event
    qbus.append([quarantine_record(track("fixed-1", sku="A"), [Violation("old_plan:$", "retired rule")], NOW, "/v1/batch")])
    resources = {"event_bus": EventBusResource(url=url), "warehouse": warehouse}
    assets = [collector_quarantine, collector_replayed, raw_events]
    for _ in range(2):
        result = dg.materialize(assets, resources=resources)
        assert result.success
    metadata = [m.metadata for m in result.asset_materializations_for_node("quarantine__collector_replayed")]
    assert metadata[0]["moved"].value == 0 and metadata[0]["checked"].value == 0  # second run
    with warehouse.connect() as conn:
        assert conn.scalar("select count(*) from raw.events where message_id = 'fixed-1'") == 1
        assert conn.scalar("select status from quarantine.collector where record_id = 'fixed-1'") == "replayed"


def test_quarantine_rate_check_levels(setup):
    _, _, _, warehouse = setup
    check = next(c for c in RATE_CHECKS if "quarantine_rate_shop_orders" in str(c.check_keys))
    with warehouse.connect() as conn:
        conn.insert_frame("raw", "shop_orders", pd.DataFrame({"order_id": [f"o{i}" for i in range(100)]}))
        rejected = pd.DataFrame({"source": "shop_orders", "record_id": ["o1", "o2"], "rule": "r", "message": "m",
                                 "raw_payload": "{}"})
        quarantine.prepare_table(conn, "shop_orders")
        conn.replace_frame("quarantine", "shop_orders", quarantine.merge(quarantine.empty(), rejected, now=NOW))
    result = check(warehouse=warehouse)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["share"].value == pytest.approx(0.02)
    assert result.metadata["warn_above"].value == 0.01 and result.metadata["error_above"].value == 0.05
