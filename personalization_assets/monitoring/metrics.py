"""The pipeline exporter's metric families: one spec list drives the exporter, the docs and tests.

Metric families of the collector and the trigger engine live with their code
(`collector/metrics.py`, `realtime/metrics.py`); `exported_sample_names()` gathers all of them, so
dashboards and alert rules can be checked against what the code really exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # gauge | counter | histogram (prometheus-client family types)
    help: str
    labels: tuple[str, ...] = ()


CLUSTER_SIZE_BUCKETS = (1, 2, 3, 5, 10, 20)

PIPELINE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("pipeline_asset_rows", "gauge", "Rows written by the latest materialization of an asset",
               ("asset",)),
    MetricSpec("pipeline_asset_rows_in", "gauge", "Rows read by the latest materialization of an asset",
               ("asset",)),
    MetricSpec("pipeline_quarantined_rows", "gauge",
               "Rows quarantined by the latest materialization, by asset (source) and rule",
               ("source", "rule")),
    MetricSpec("pipeline_duplicates_merged", "gauge",
               "Records merged into an existing golden record by the latest identity run", ("asset",)),
    MetricSpec("identity_cluster_size", "histogram",
               "Source records per golden customer (core.customer_crosswalk)"),
    MetricSpec("segment_size", "gauge", "Members of a segment after its latest materialization",
               ("segment",)),
    MetricSpec("sync_rows_total", "counter", "Rows sent to destinations, by outcome",
               ("destination", "outcome")),
    MetricSpec("asset_freshness_lag_seconds", "gauge", "Seconds since the asset's latest materialization",
               ("asset",)),
    MetricSpec("unsubscribe_propagation_pending_oldest_seconds", "gauge",
               "Age of the oldest unsubscribe not yet propagated to every destination (0: none pending)"),
    MetricSpec("pipeline_exporter_source_up", "gauge",
               "1 when the exporter could read the source (dagster, warehouse) on this scrape",
               ("source",)),
)


def sample_names(name: str, kind: str) -> set[str]:
    """The series names Prometheus stores for one family."""
    if kind == "counter":
        base = name.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    if kind == "summary":
        return {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
    return {name}


def registered_families() -> dict[str, str]:
    """name -> type of every metric family the platform's processes export.

    Imports the collector and trigger-engine metric modules (they register on the default registry)
    and adds the pipeline exporter's specs."""
    import prometheus_client

    import personalization_assets.collector.metrics  # noqa: F401  (registers its metrics)
    import personalization_assets.realtime.metrics  # noqa: F401

    families = {}
    for family in prometheus_client.REGISTRY.collect():
        if family.name.startswith(("collector_", "triggers_")):
            families[family.name + ("_total" if family.type == "counter" else "")] = family.type
    families.update({spec.name: spec.kind for spec in PIPELINE_METRICS})
    return families


def exported_sample_names(families: Iterable[tuple[str, str]] | None = None) -> set[str]:
    names: set[str] = set()
    for name, kind in (families if families is not None else registered_families().items()):
        names |= sample_names(name, kind)
    return names
