"""The pipeline exporter against a real Dagster instance and a real DuckDB file."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client import generate_latest

from personalization_assets.monitoring.exporter import PipelineCollector, duckdb_read_only, exporter_registry
from personalization_assets.monitoring.snapshot import Materialization, materialization_samples


def scrape(collector) -> dict[tuple[str, tuple], float]:
    text = generate_latest(exporter_registry(collector)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def _materialize(instance, key, metadata):
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, metadata=metadata))


def test_reads_latest_materialization_metadata(instance):
    _materialize(instance, ["staging", "customers"], {"dagster/row_count": 50, "quarantined": 99})
    _materialize(instance, ["staging", "customers"], {  # the latest wins
        "dagster/row_count": 90, "quarantined_by_rule": dg.MetadataValue.json({"email.format": 7, "phone": 3})})
    _materialize(instance, ["core", "customers"], {"dagster/row_count": 80, "rows_in": 90, "duplicates_merged": 10})
    _materialize(instance, ["marts", "segment_membership"], {
        "segment_sizes": dg.MetadataValue.json({"high_value": 12, "win_back": 0}), "segment_size:at_risk": 4})
    clock = lambda: datetime.now(timezone.utc).timestamp() + 3600  # noqa: E731  (an hour later)
    got = scrape(PipelineCollector(instance, clock=clock))
    assert got[("pipeline_asset_rows", (("asset", "staging/customers"),))] == 90
    assert got[("pipeline_asset_rows_in", (("asset", "staging/customers"),))] == 100
    assert got[("pipeline_quarantined_rows", (("rule", "email.format"), ("source", "staging/customers")))] == 7
    assert ("pipeline_quarantined_rows", (("rule", "unspecified"), ("source", "staging/customers"))) not in got
    assert got[("pipeline_asset_rows_in", (("asset", "core/customers"),))] == 90
    assert got[("pipeline_duplicates_merged", (("asset", "core/customers"),))] == 10
    assert {s: got[("segment_size", (("segment", s),))] for s in ("high_value", "win_back", "at_risk")} == {
        "high_value": 12, "win_back": 0, "at_risk": 4}
    lag = got[("asset_freshness_lag_seconds", (("asset", "marts/segment_membership"),))]
    assert 3590 < lag < 3700
    assert got[("pipeline_exporter_source_up", (("source", "dagster"),))] == 1


def test_warehouse_tables_and_a_locked_file(tmp_path):
    path = str(tmp_path / "w.duckdb")
    now = datetime(2026, 1, 10, tzinfo=timezone.utc)
    with duckdb.connect(path) as con:
        con.execute("create schema core; create schema activation")
        con.execute("create table core.customer_crosswalk as select * from (values "
                    "('crm:1','k1'),('crm:2','k1'),('shop:3','k1'),('crm:4','k2'),('crm:5','k3'),('crm:6','k3')) t(record_id, customer_key)")
        con.execute("create table activation.sync_results (destination varchar, outcome varchar, rows bigint)")
        con.execute("insert into activation.sync_results values ('braze','sent',100),('braze','sent',20),('braze','failed',2)")
        con.execute("create table activation.suppression_propagation (email varchar, destination varchar,"
                    " requested_at timestamptz, propagated_at timestamptz)")
        con.execute("insert into activation.suppression_propagation values (?, 'braze', ?, ?), (?, 'braze', ?, null),"
                    " (?, 'webhook', ?, null)", ["a@x.io", now - timedelta(days=5), now - timedelta(days=4),
                                                  "b@x.io", now - timedelta(days=3), "c@x.io", now - timedelta(hours=1)])
    collector = PipelineCollector(None, duckdb_read_only(path), clock=lambda: now.timestamp())
    got = scrape(collector)
    assert got[("sync_rows_total", (("destination", "braze"), ("outcome", "sent")))] == 120
    assert got[("sync_rows_total", (("destination", "braze"), ("outcome", "failed")))] == 2
    assert got[("unsubscribe_propagation_pending_oldest_seconds", ())] == 3 * 86400
    assert got[("identity_cluster_size_bucket", (("le", "1"),))] == 1  # k2
    assert got[("identity_cluster_size_bucket", (("le", "2"),))] == 2  # + k3
    assert got[("identity_cluster_size_bucket", (("le", "3"),))] == 3  # + k1
    assert got[("identity_cluster_size_count", ())] == 3 and got[("identity_cluster_size_sum", ())] == 6

    writer = duckdb.connect(path)  # a running Dagster run holds the file: reads fail meanwhile
    try:
        locked = scrape(collector)
    finally:
        writer.close()
    assert locked[("pipeline_exporter_source_up", (("source", "warehouse"),))] == 0
    assert locked[("sync_rows_total", (("destination", "braze"), ("outcome", "sent")))] == 120  # last good values


def test_absent_tables_give_no_samples_not_errors(tmp_path):
    path = str(tmp_path / "empty.duckdb")
    duckdb.connect(path).close()
    got = scrape(PipelineCollector(None, duckdb_read_only(path)))
    assert got[("pipeline_exporter_source_up", (("source", "warehouse"),))] == 1
    assert not [k for k in got if k[0].startswith(("sync_rows", "unsubscribe", "identity"))]


def test_malformed_metadata_is_ignored_not_fatal():
    samples = materialization_samples([Materialization("x/y", 0.0, {
        "dagster/row_count": "n/a", "quarantined_by_rule": "{not json", "segment_size:a": None, "duplicates_merged": True})], now=10.0)
    assert samples.get("asset_freshness_lag_seconds", asset="x/y") == 10.0
    assert samples.get("pipeline_asset_rows", asset="x/y") is None
    assert "segment_size" not in samples.values and "pipeline_duplicates_merged" not in samples.values
