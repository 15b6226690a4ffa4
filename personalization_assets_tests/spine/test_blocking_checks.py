"""A failed blocking check stops the graph: an event of an unknown type, appended to the bus by a
producer other than the collector, fails the Pandera check of staging.events, and the identity map
built from those events does not run."""

from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from personalization_assets.assets import core, raw, staging
from personalization_assets.bus import open_bus
from personalization_assets.partitions import day_of
from personalization_assets.resources import resources_for
from personalization_assets.resources.sources import EventBusResource

CROSSWALK = dg.AssetSpec(["core", "customer_crosswalk"])


def _event(mid: str, kind: str) -> dict:
    return {"type": kind, "event": "Product Viewed", "userId": "u1", "messageId": mid,
            "timestamp": datetime.now(timezone.utc).isoformat()}


def _run(local_env, events: list[dict]) -> dg.ExecuteInProcessResult:
    url = f"sqlite:///{local_env}/events.db"
    with open_bus(url) as bus:
        bus.append(events)
    resources = {**resources_for("local"), "event_bus": EventBusResource(url=url)}
    with resources["warehouse"].connect() as conn:  # identity_map's other input, as core would leave it
        frame = pd.DataFrame({"record_id": ["crm:1"], "customer_key": ["k1"], "source": ["crm"], "source_id": ["1"]})
        conn.prepare_table("core", "customer_crosswalk", frame)
        conn.insert_frame("core", "customer_crosswalk", frame)
    return dg.materialize([raw.events, staging.events, core.identity_map, CROSSWALK, *staging.STAGING_CHECKS],
                          resources=resources, partition_key=day_of(datetime.now(timezone.utc)),
                          selection=[raw.events, staging.events, core.identity_map], raise_on_error=False)


def _outcome(result):
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    built = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    return checks, built


def test_identity_map_waits_for_a_passing_check(local_env):
    checks, built = _outcome(_run(local_env, [_event("m1", "track")]))
    assert checks["pandera_StagingEvents"] is True
    assert "core/identity_map" in built


def test_a_failed_blocking_check_stops_the_identity_map(local_env):
    result = _run(local_env, [_event("m1", "track"), _event("m2", "purchase")])
    checks, built = _outcome(result)
    assert checks["pandera_StagingEvents"] is False
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == "pandera_StagingEvents")
    assert "purchase" in str(evaluation.metadata["failures"].value)
    assert "staging/events" in built and "core/identity_map" not in built
    assert not result.success
