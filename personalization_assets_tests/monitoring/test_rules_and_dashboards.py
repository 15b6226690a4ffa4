"""Alert rules (promtool) and dashboards checked against the metrics the code really registers."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from personalization_assets.monitoring.metrics import exported_sample_names, registered_families
from personalization_assets_tests.conftest import REPO_ROOT, require_tool
from personalization_assets_tests.monitoring.promql import metric_names

MONITORING = REPO_ROOT / "monitoring"
RULES = MONITORING / "rules" / "alerts.yml"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
BUILTIN = {"up"}  # series Prometheus writes itself


def test_promtool_check_rules():
    out = subprocess.run([require_tool("promtool"), "check", "rules", str(RULES)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass():
    out = subprocess.run([require_tool("promtool"), "test", "rules", str(MONITORING / "rules" / "alerts_test.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_every_rule_has_summary_runbook_and_a_firing_and_quiet_test():
    tests = yaml.safe_load((MONITORING / "rules" / "alerts_test.yml").read_text())["tests"]
    fired, quiet = set(), set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    for rule in _rules():
        name = rule["alert"]
        assert rule["annotations"].get("summary") and rule["annotations"].get("runbook"), name
        assert name in fired, f"{name}: no test where it fires"
        assert name in quiet, f"{name}: no test where it stays quiet"
        anchor = rule["annotations"]["runbook_url"].split("#")[1]
        assert f"### {name}" in (MONITORING / "README.md").read_text() and anchor == name.lower()


def test_rules_only_read_exported_metrics():
    exported = exported_sample_names() | BUILTIN
    for rule in _rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, f"{rule['alert']} reads unknown metrics {names - exported}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_queries_name_exported_metrics(path):
    dashboard = json.loads(path.read_text())
    exported = exported_sample_names() | BUILTIN
    assert dashboard["panels"], path.name
    for panel in dashboard["panels"]:
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs, f"{path.name}: panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "prometheus"
        for expr in exprs:
            names = metric_names(expr)
            assert names, f"{path.name}: {panel['title']!r} query names no metric: {expr}"
            assert names <= exported, f"{path.name}: {panel['title']!r} reads unknown {names - exported}"


def test_the_four_dashboards_exist_and_provisioning_points_at_their_datasource():
    assert {p.stem for p in DASHBOARDS} == {"overview", "ingestion", "triggers", "syncs"}
    ds = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == "prometheus"
    assert yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/personalization.yml").read_text())["providers"]


def test_every_exported_metric_is_documented_and_no_documented_metric_is_stale():
    documented = set(re.findall(r"^\| `([a-z_:]+)` \| (?:counter|gauge|histogram)", (MONITORING / "README.md").read_text(), re.M))
    exported = set(registered_families())
    assert exported - documented == set(), "undocumented metrics"
    assert documented - exported == set(), "documented but not exported"


def test_metric_name_extraction():
    assert metric_names('sum by (le) (rate(a_bucket{x="y"}[5m])) / on (s) label_replace(b, "s", "$1", "asset", "(.+)")') == {"a_bucket", "b"}
    assert metric_names("c > 3 * avg_over_time(c[6h] offset 1h) and time() - d > 1e3") == {"c", "d"}
