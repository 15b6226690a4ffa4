"""`personalization audience preview FILE.yaml` on a real DuckDB warehouse file."""

from __future__ import annotations

import duckdb

from personalization_assets.cli import main

from .test_assets import staged


def test_preview_prints_size_overlap_and_members_with_evidence(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    frame = staged(data / "warehouse.duckdb")
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(data))
    monkeypatch.delenv("PERSONALIZATION_DUCKDB_PATH", raising=False)
    definition = tmp_path / "carted.yaml"
    definition.write_text("""
name: carted_twice
description: put something in the cart at least twice, ever
rule:
  all:
    - {event: product added, count: ">= 2", within: 3650d}
    - {event: product viewed, exists: true, within: 3650d}
""")
    assert main(["audience", "preview", str(definition)]) == 0
    out = capsys.readouterr().out
    adds = frame[frame["event"] == "product added"].groupby("user_id").size()
    expected = sorted(adds[adds >= 2].index)
    assert out.splitlines()[0] == f"carted_twice: {len(expected)} members now"
    assert "overlap with cart_abandonment:" in out
    first = [line for line in out.splitlines() if line.startswith(f"  {expected[0]}: ")]
    assert first and "count: >= 2" in first[0] and "exists: True" in first[0]


def test_preview_of_a_bad_definition_is_one_line(tmp_path, capsys):
    definition = tmp_path / "bad.yaml"
    definition.write_text("name: bad\nrule: {event: x, count: lots, within: 1d}\n")
    assert main(["audience", "preview", str(definition)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "'lots' is not a comparison" in err and "\n" not in err


def test_preview_command_never_imports_pandas(tmp_path):
    """Importing pandas costs ~0.6 s of the command's 2 s budget at 1M customers: the preview reads
    its small results as rows (`WarehouseConnection.rows`)."""
    import os
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    staged(data / "warehouse.duckdb")
    definition = tmp_path / "viewed.yaml"
    definition.write_text("name: viewed\nrule: {event: product viewed, exists: true, within: 3650d}\n")
    script = ("import sys\nfrom personalization_assets.cli import main\n"
              f"code = main(['audience', 'preview', {str(definition)!r}])\n"
              "print('pandas' in sys.modules)\nsys.exit(code)\n")
    env = {**os.environ, "PERSONALIZATION_DATA_DIR": str(data)}
    env.pop("PERSONALIZATION_DUCKDB_PATH", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("viewed: ") and "members now" in lines[0]
    assert lines[-1] == "False"
