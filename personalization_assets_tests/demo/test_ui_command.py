"""`personalization ui`: `dagster dev` on the demo's instance and data directory, without the
"use 'dg dev'" warning (the project keeps the classic layout that `dagster dev` serves)."""

from __future__ import annotations

import subprocess
import sys

import yaml

from personalization_assets.cli import build_parser, ui_command
from personalization_assets_tests.conftest import REPO_ROOT

SUPERSEDED = ("import warnings\n"
              "from dagster_shared.utils.warnings import SupersessionWarning\n"
              "warnings.warn(\"Function `dev_command` is superseded. Use 'dg dev' instead.\", SupersessionWarning)\n")


def test_ui_runs_dagster_dev_on_the_demos_instance_and_data(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("PERSONALIZATION_DATA_DIR", raising=False)
    args = build_parser().parse_args(["ui", "--port", "3999", "--data-dir", str(tmp_path / "data"),
                                      "--dagster-home", str(tmp_path / "home")])
    command, env = ui_command(args)
    assert command[0].endswith("dagster") and command[1:] == [
        "dev", "-m", "personalization_assets.definitions", "--host", "127.0.0.1", "--port", "3999"]
    assert env["DAGSTER_HOME"] == str(tmp_path / "home") and env["PERSONALIZATION_DATA_DIR"] == str(tmp_path / "data")
    copied = yaml.safe_load((tmp_path / "home" / "dagster.yaml").read_text())
    assert copied == yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())  # the pool limit and run monitoring of the repo

    # Dagster 1.13 warns on `dagster dev` with a SupersessionWarning; the UI's environment hides it.
    shown = subprocess.run([sys.executable, "-c", SUPERSEDED], capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in env.items() if k != "PYTHONWARNINGS"})
    assert "dg dev" in shown.stderr
    hidden = subprocess.run([sys.executable, "-c", SUPERSEDED], capture_output=True, text=True, timeout=60, env=env)
    assert hidden.returncode == 0 and hidden.stderr == ""
