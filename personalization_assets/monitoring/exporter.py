"""The pipeline exporter: a long-lived process Prometheus scrapes (`personalization exporter`).

On every scrape it reads the latest materialization of each asset from the Dagster instance and a
few warehouse tables. A source that cannot be read (the DuckDB file is locked by a running run,
Snowflake is down) reports `pipeline_exporter_source_up{source}=0` and the last values read,
so counters do not vanish and reappear between scrapes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Callable, ContextManager, Iterator

from prometheus_client.core import (
    CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
)

from .metrics import PIPELINE_METRICS
from .snapshot import Materialization, Samples, materialization_samples
from .warehouse_stats import Sql, WarehouseTables, cluster_histogram, warehouse_samples

log = logging.getLogger(__name__)
WarehouseConnect = Callable[[], ContextManager[Sql]]


def latest_materializations(instance) -> list[Materialization]:
    """Latest materialization of every asset the instance knows (public DagsterInstance APIs)."""
    keys = list(instance.get_asset_keys())
    if not keys:
        return []
    events = instance.get_latest_materialization_events(keys)
    out = []
    for key, entry in events.items():
        if entry is None or entry.asset_materialization is None:
            continue
        metadata = {k: getattr(v, "value", v) for k, v in entry.asset_materialization.metadata.items()}
        out.append(Materialization("/".join(key.path), float(entry.timestamp), metadata))
    return out


def duckdb_read_only(path: str) -> WarehouseConnect:
    """Connect read-only and briefly: DuckDB lets no other process in while one holds the file."""

    @contextlib.contextmanager
    def connect() -> Iterator[Sql]:
        import duckdb

        from ..warehouse import WarehouseConnection

        raw = duckdb.connect(path, read_only=True)
        try:
            yield WarehouseConnection(raw, "duckdb")
        finally:
            raw.close()

    return connect


class PipelineCollector:
    """A prometheus-client custom collector: metrics computed at scrape time, never stale state."""

    def __init__(self, instance=None, warehouse_connect: WarehouseConnect | None = None,
                 tables: WarehouseTables = WarehouseTables(), clock: Callable[[], float] = time.time):
        self.instance = instance
        self.warehouse_connect = warehouse_connect
        self.tables = tables
        self.clock = clock
        self._last_warehouse: tuple[Samples, object] = (Samples(), None)

    def describe(self):
        return []  # values are read at scrape time; nothing to check at registration

    def snapshot(self) -> tuple[Samples, object]:
        now = self.clock()
        samples = Samples()
        if self.instance is not None:
            try:
                materialization_samples(latest_materializations(self.instance), now, samples)
                samples.set("pipeline_exporter_source_up", 1, source="dagster")
            except Exception:
                log.exception("could not read the Dagster instance")
                samples.set("pipeline_exporter_source_up", 0, source="dagster")
        histogram = None
        if self.warehouse_connect is not None:
            try:
                with self.warehouse_connect() as conn:
                    fresh = warehouse_samples(conn, now, self.tables)
                    histogram = cluster_histogram(conn, self.tables.crosswalk)
                self._last_warehouse = (fresh, histogram)
                samples.set("pipeline_exporter_source_up", 1, source="warehouse")
            except Exception as exc:
                log.warning("warehouse not readable on this scrape: %s", exc)
                samples.set("pipeline_exporter_source_up", 0, source="warehouse")
                fresh, histogram = self._last_warehouse
            for name, series in fresh.values.items():
                samples.values[name].update(series)
        return samples, histogram

    def collect(self):
        samples, histogram = self.snapshot()
        for spec in PIPELINE_METRICS:
            if spec.kind == "histogram":
                family = HistogramMetricFamily(spec.name, spec.help)
                if histogram is not None:
                    buckets, total, _count = histogram
                    family.add_metric([], buckets, total)
                yield family
                continue
            cls = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            family = cls(spec.name, spec.help, labels=list(spec.labels))
            for labels, value in samples.values.get(spec.name, {}).items():
                by_name = dict(labels)
                family.add_metric([by_name[label] for label in spec.labels], value)
            yield family


def exporter_registry(collector: PipelineCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def run_exporter(port: int = 9110, host: str = "127.0.0.1", *, instance=None,
                 warehouse_connect: WarehouseConnect | None = None, block: bool = True):
    """Serve /metrics on host:port. Defaults: the instance of DAGSTER_HOME and the local DuckDB
    file read-only. With block=False, returns (server, thread) so a caller or test can stop it."""
    from prometheus_client import start_http_server

    if instance is None:
        import dagster as dg

        instance = dg.DagsterInstance.get()
    if warehouse_connect is None:
        from .. import settings

        warehouse_connect = duckdb_read_only(str(settings.warehouse_path()))
    registry = exporter_registry(PipelineCollector(instance, warehouse_connect))
    server, thread = start_http_server(port, addr=host, registry=registry)
    if not block:
        return server, thread
    try:
        while thread.is_alive():
            thread.join(1.0)
    finally:
        server.shutdown()
    return server, thread
