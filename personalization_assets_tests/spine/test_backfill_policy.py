"""Backfills of the arrival-day partitions: one run locally, one run per day in prod."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from personalization_assets.partitions import backfill_policy

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("deployment, days, expected", [
    ("local", "", None),  # single run: max_partitions_per_run is None
    ("prod", "", 1),
    ("prod", "7", 7),
    ("prod", "0", None),
    ("local", "3", 3),
])
def test_the_policy_follows_the_deployment_and_the_setting(monkeypatch, deployment, days, expected):
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", deployment)
    monkeypatch.setenv("PERSONALIZATION_BACKFILL_DAYS_PER_RUN", days)
    assert backfill_policy().max_partitions_per_run == expected


@pytest.mark.parametrize("bad", ["two", "-1", "1.5"])
def test_a_bad_setting_is_a_clear_error(monkeypatch, bad):
    monkeypatch.setenv("PERSONALIZATION_BACKFILL_DAYS_PER_RUN", bad)
    with pytest.raises(ValueError, match="PERSONALIZATION_BACKFILL_DAYS_PER_RUN"):
        backfill_policy()


def test_in_prod_the_partitioned_staging_assets_fan_out_one_run_per_day():
    """What the code server loads: the assets are defined at import, under the process's settings."""
    code = ("import json; from personalization_assets.assets.staging import events, orders;"
            " print(json.dumps({str(k.path): a.backfill_policy.max_partitions_per_run"
            " for a in (events, orders) for k in a.keys}))")
    env = {k: v for k, v in os.environ.items() if k != "PERSONALIZATION_BACKFILL_DAYS_PER_RUN"}
    runs = {}
    for deployment in ("local", "prod"):
        out = subprocess.run([sys.executable, "-c", code], env={**env, "DAGSTER_DEPLOYMENT": deployment},
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        runs[deployment] = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(runs["local"].values()) == {None}  # one run for the whole range
    assert set(runs["prod"].values()) == {1} and len(runs["prod"]) == 3  # events, orders, order_lines
