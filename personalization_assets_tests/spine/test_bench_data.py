"""The full-size datasets are for `bench/` only: read from a configurable folder, and a missing one
stops the benchmark with one line naming it (the tests read the slices in fixtures/ instead)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import data
from personalization_assets_tests.conftest import REPO_ROOT


def test_the_data_folder_comes_from_the_environment_else_beside_the_repository(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV, raising=False)
    assert data.data_dir() == REPO_ROOT.parent / "shared" / "data"
    (tmp_path / "febrl").mkdir()
    monkeypatch.setenv(data.ENV, str(tmp_path))
    assert data.dataset("febrl") == tmp_path / "febrl"
    with pytest.raises(SystemExit, match=r"^bench: dataset 'cdnow' not found at .*cdnow \(pass --data-dir or set "
                                         r"PERSONALIZATION_BENCH_DATA"):
        data.dataset("cdnow")


def test_a_benchmark_without_its_dataset_says_so_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != data.ENV}
    out = subprocess.run([sys.executable, "-m", "bench.identity", "--data-dir", str(tmp_path)], cwd=REPO_ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.strip() == (f"bench: dataset 'febrl' not found at {tmp_path / 'febrl'} (pass --data-dir or set "
                                  "PERSONALIZATION_BENCH_DATA to the folder that holds febrl/)")
