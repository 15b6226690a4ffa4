"""A real Prometheus on loopback scrapes a real collector and the pipeline exporter; the counters
it reports through its HTTP API match what was sent."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid

import dagster as dg
import pytest
import requests

from personalization_assets.collector import CollectorSettings
from personalization_assets.collector.server import bind, build_server
from personalization_assets.monitoring.exporter import run_exporter
from personalization_assets_tests.conftest import require_tool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")


@pytest.fixture
def collector_urls(tmp_path):
    """(ingestion URL, admin URL with /health and /metrics) of a real collector."""
    public, admin = bind("127.0.0.1", 0), bind("127.0.0.1", 0)
    server = build_server(CollectorSettings(bus_url=f"sqlite:///{tmp_path}/bus/events.db"), public, admin)
    thread = threading.Thread(target=server.run, kwargs={"sockets": server.collector_sockets}, daemon=True)
    thread.start()
    url, admin_url = (f"http://127.0.0.1:{s.getsockname()[1]}" for s in (public, admin))
    wait_for(lambda: requests.get(admin_url + "/health", timeout=1).status_code == 200, 10, "collector health")
    yield url, admin_url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def exporter_port():
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=["marts", "segment_membership"], metadata={"segment_size:high_value": 17}))
    port = free_port()
    server, thread = run_exporter(port, instance=instance, warehouse_connect=None, block=False)
    yield port
    server.shutdown()
    instance.dispose()


@pytest.fixture
def prometheus_binary() -> str:
    return require_tool("prometheus")


def start_prometheus(binary: str, tmp_path, targets: dict[str, int]):
    jobs = "".join(f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
                   for job, port in targets.items())
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}")
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, f"http://127.0.0.1:{port}"


def query(api: str, expr: str) -> list[dict]:
    body = requests.get(f"{api}/api/v1/query", params={"query": expr}, timeout=2).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar(api: str, expr: str) -> float | None:
    result = query(api, expr)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_collector_and_exporter(prometheus_binary, tmp_path, collector_urls, exporter_port):
    collector_url, admin_url = collector_urls
    before = requests.get(admin_url + "/metrics", timeout=2).text
    base = sum(float(line.rsplit(" ", 1)[1]) for line in before.splitlines()
               if line.startswith('collector_events_accepted_total{type="track"}'))
    run = uuid.uuid4().hex
    batch = {"batch": [{"type": "track", "event": "Product Viewed", "userId": f"u{i}",
                        "messageId": f"{run}-{i}", "properties": {"sku": f"S{i}"}} for i in range(7)]}
    assert requests.post(collector_url + "/v1/batch", json=batch, timeout=5).json()["accepted"] == 7
    assert requests.post(collector_url + "/v1/batch", json=batch, timeout=5).json()["duplicates"] == 7

    proc, api = start_prometheus(prometheus_binary, tmp_path, {"collector": int(admin_url.rsplit(":", 1)[1]),
                                            "pipeline": exporter_port})
    try:
        wait_for(lambda: requests.get(api + "/-/ready", timeout=1).status_code == 200, 10, "prometheus ready")
        wait_for(lambda: scalar(api, 'sum(up{job=~"collector|pipeline"})') == 2, 10, "both targets up")
        accepted = wait_for(lambda: scalar(api, 'collector_events_accepted_total{job="collector",type="track"}'),
                            5, "accepted counter scraped")
        assert accepted == base + 7
        assert scalar(api, 'collector_events_deduplicated_total{job="collector"}') >= 7
        assert scalar(api, 'sum(collector_requests_total{job="collector",endpoint="/v1/batch",code="200"})') >= 2
        assert scalar(api, 'segment_size{job="pipeline",segment="high_value"}') == 17
        assert scalar(api, 'pipeline_exporter_source_up{job="pipeline",source="dagster"}') == 1
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
