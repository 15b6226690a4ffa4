"""Quality gate in the UI: the collector quarantine replay, and a quarantine-rate check per source."""

from __future__ import annotations

import dagster as dg

from ..bus import EventBus
from ..quality.quarantine import OPEN, RateThresholds, quarantine_rate
from ..quality.replay import SOURCE as COLLECTOR, replay_collector_quarantine
from ..resources.sources import EventBusResource
from ..resources.warehouse import Warehouse, WarehouseConnection
from .common import WAREHOUSE_POOL, utc_now

RATE_THRESHOLDS = RateThresholds(warn=0.01, error=0.05)

# quarantine source -> (asset the check sits on, raw table of the source, whether its quarantined
# rows are also in that raw table: the collector's never reach raw.events)
RATE_SOURCES = {
    "crm_customers": (["staging", "customers"], "crm_customers", True),
    "shop_orders": (["staging", "orders"], "shop_orders", True),
    "events": (["staging", "events"], "events", True),
    COLLECTOR: (["quarantine", COLLECTOR], "events", False),
}


@dg.asset(key=["quarantine", "collector_replayed"], deps=[["quarantine", COLLECTOR]], group_name="ingestion",
          pool=WAREHOUSE_POOL, kinds={"sqlite", "duckdb"})
def collector_replayed(event_bus: EventBusResource, warehouse: Warehouse) -> dg.MaterializeResult:
    """Collector-quarantined events that pass the current tracking plan, moved back onto the event
    bus (raw.events picks them up); each is moved once, keyed on its messageId.

    manual: run it after fixing the tracking plan or the collector; replaying on its own would
    only retry what still fails."""
    bus: EventBus = event_bus.open()
    try:
        with warehouse.connect() as conn:
            report = replay_collector_quarantine(conn, bus, now=utc_now())
    finally:
        bus.close()
    return dg.MaterializeResult(metadata={
        "checked": dg.MetadataValue.int(report.checked),
        "moved": dg.MetadataValue.int(report.moved),
        "already_on_bus": dg.MetadataValue.int(report.already_on_bus),
        "still_failing": dg.MetadataValue.int(sum(report.still_failing.values())),
        "still_failing_by_rule": dg.MetadataValue.json(report.still_failing),
    })


quarantine_replay = dg.define_asset_job(
    "quarantine_replay",
    selection=dg.AssetSelection.assets(["quarantine", COLLECTOR], ["quarantine", "collector_replayed"]),
    executor_def=dg.in_process_executor,
    description="Re-validates the collector's quarantine and moves what passes now onto the event bus.",
)


def _count(conn: WarehouseConnection, table: str, where: str = "", what: str = "*") -> int:
    schema, name = table.split(".")
    if not conn.table_exists(schema, name):
        return 0
    return int(conn.scalar(f"select count({what}) from {table} {where}") or 0)


def quarantine_rate_check(source: str, asset_key: list[str], raw_table: str, in_raw: bool) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=dg.AssetKey(asset_key), name=f"quarantine_rate_{source}", pool=WAREHOUSE_POOL,
                    description=f"Share of {source} records in open quarantine: warns above "
                                f"{RATE_THRESHOLDS.warn:.0%}, errors above {RATE_THRESHOLDS.error:.0%}")
    def _check(warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            raw_rows = _count(conn, f"raw.{raw_table}")
            open_rows = _count(conn, f"quarantine.{source}", f"where status = '{OPEN}'", "distinct record_id")
        rows = raw_rows if in_raw else raw_rows + open_rows
        verdict = quarantine_rate(rows, open_rows, RATE_THRESHOLDS)
        return dg.AssetCheckResult(
            passed=verdict.level == "ok",
            severity=dg.AssetCheckSeverity.ERROR if verdict.level == "error" else dg.AssetCheckSeverity.WARN,
            metadata={"rows": rows, "open_quarantined": open_rows, "share": float(verdict.share),
                      "warn_above": RATE_THRESHOLDS.warn, "error_above": RATE_THRESHOLDS.error})

    return _check


RATE_CHECKS = [quarantine_rate_check(source, *spec) for source, spec in RATE_SOURCES.items()]

defs = dg.Definitions(assets=[collector_replayed], asset_checks=RATE_CHECKS, jobs=[quarantine_replay])
