"""`personalization lift` on a small Hillstrom-shaped CSV: JSON shape, numbers, and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from personalization_assets.cli import main

ARMS = ["Mens E-Mail", "Womens E-Mail", "No E-Mail"]


@pytest.fixture
def campaign(tmp_path):
    rng = np.random.default_rng(42)
    n = 1200
    segment = rng.choice(ARMS, n)
    visit = (rng.random(n) < np.where(segment == "No E-Mail", 0.10, 0.16)).astype(int)
    conversion = (rng.random(n) < 0.02).astype(int)
    spend = np.round(np.where(conversion == 1, rng.gamma(2, 60, n), 0.0), 2)
    df = pd.DataFrame({"recency": rng.integers(1, 13, n), "history_segment": "2) $100 - $200",
                       "segment": segment, "visit": visit, "conversion": conversion, "spend": spend})
    path = tmp_path / "campaign.csv"
    df.to_csv(path, index=False)
    return path, df


def _run(capsys, *argv):
    code = main(["lift", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_has_exactly_the_documented_shape_and_independent_numbers(campaign, capsys):
    path, df = campaign
    code, out, _ = _run(capsys, "--csv", str(path), "--arm-column", "segment", "--control", "No E-Mail",
                        "--outcome", "visit", "--outcome", "conversion", "--outcome", "spend", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"arms", "method"} and isinstance(result["method"], str)
    assert [a["arm"] for a in result["arms"]] == ["No E-Mail", "Mens E-Mail", "Womens E-Mail"]
    means = df.groupby("segment")[["visit", "conversion", "spend"]].mean()
    counts = df["segment"].value_counts()
    control = df[df.segment == "No E-Mail"]
    for arm in result["arms"]:
        assert set(arm) == {"arm", "n", "outcomes"} and arm["n"] == counts[arm["arm"]]
        assert set(arm["outcomes"]) == {"visit", "conversion", "spend"}
        for name, o in arm["outcomes"].items():
            assert set(o) == {"mean", "lift", "ci_low", "ci_high", "relative_lift", "p_value"}
            assert abs(o["mean"] - means.loc[arm["arm"], name]) < 1e-9
            if arm["arm"] == "No E-Mail":
                assert all(o[k] is None for k in ("lift", "ci_low", "ci_high", "relative_lift", "p_value"))
                continue
            t, c = df.loc[df.segment == arm["arm"], name].to_numpy(float), control[name].to_numpy(float)
            vt, vc = t.var(ddof=1) / t.size, c.var(ddof=1) / c.size
            dof = (vt + vc) ** 2 / (vt**2 / (t.size - 1) + vc**2 / (c.size - 1))
            half = sps.t.ppf(0.975, dof) * np.sqrt(vt + vc)
            d = t.mean() - c.mean()
            assert o["lift"] == pytest.approx(d, abs=1e-12)
            assert abs(o["ci_high"] - o["ci_low"] - 2 * half) / (2 * half) < 0.02
            assert o["ci_low"] == pytest.approx(d - half, rel=0.02, abs=1e-12)
            assert o["relative_lift"] == pytest.approx(t.mean() / c.mean() - 1)
            assert o["p_value"] == pytest.approx(sps.ttest_ind(t, c, equal_var=False).pvalue, rel=1e-6)


def test_table_output_names_every_arm(campaign, capsys):
    path, _ = campaign
    code, out, _ = _run(capsys, "--csv", str(path), "--arm-column", "segment", "--control", "No E-Mail", "--outcome", "spend")
    assert code == 0 and all(arm in out for arm in ARMS) and "95% CI" in out


@pytest.mark.parametrize("argv, message", [
    (["--csv", "{missing}", "--arm-column", "segment", "--control", "No E-Mail", "--outcome", "visit"], "no such file"),
    (["--csv", "{path}", "--arm-column", "group", "--control", "No E-Mail", "--outcome", "visit"], "arm column 'group'"),
    (["--csv", "{path}", "--arm-column", "segment", "--control", "Control", "--outcome", "visit"], "control value 'Control'"),
    (["--csv", "{path}", "--arm-column", "segment", "--control", "No E-Mail", "--outcome", "revenue"], "outcome column 'revenue'"),
    (["--csv", "{path}", "--arm-column", "segment", "--control", "No E-Mail", "--outcome", "history_segment"],
     "not numbers, first at data row 1"),
])
def test_bad_input_is_one_clear_line_and_exit_1(campaign, capsys, tmp_path, argv, message):
    path, _ = campaign
    argv = [a.format(path=path, missing=tmp_path / "nope.csv") for a in argv]
    code, out, err = _run(capsys, *argv)
    assert code == 1 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_an_empty_outcome_cell_is_reported_not_dropped(tmp_path, capsys):
    path = tmp_path / "gap.csv"
    path.write_text("arm,spend\nA,1.5\nB,\nB,2\nA,3\n")
    code, _, err = _run(capsys, "--csv", str(path), "--arm-column", "arm", "--control", "A", "--outcome", "spend")
    assert code == 1 and "data row 2" in err


def test_the_installed_command_prints_no_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"arm,y\n\xff\xfe,1\n")
    proc = subprocess.run([sys.executable, "-m", "personalization_assets.cli", "lift", "--csv", str(bad),
                           "--arm-column", "arm", "--control", "x", "--outcome", "y"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.startswith("error:")


def test_a_row_without_an_arm_is_reported(tmp_path, capsys):
    path = tmp_path / "noarm.csv"
    path.write_text("arm,spend\nA,1.5\nB,2\n,3\nA,3\n")
    code, _, err = _run(capsys, "--csv", str(path), "--arm-column", "arm", "--control", "A", "--outcome", "spend")
    assert code == 1 and "arm column 'arm'" in err and "data row 3" in err
