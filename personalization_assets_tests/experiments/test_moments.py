"""Results from per-arm moments equal the per-member statistics: Welch on each arm's outcomes,
mSPRT, and CUPED fitted by least squares over every member and applied per arm."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from personalization_assets.experiments.assign import CONTROL, Experiment
from personalization_assets.experiments.attribution import OUTCOME_COLUMNS
from personalization_assets.experiments.moments import moments_of_frame, results_from_moments
from personalization_assets.experiments.stats import ArmStats, cuped, msprt, welch_lift

NOW = datetime(2026, 3, 10, tzinfo=timezone.utc)
SPLIT = {CONTROL: 0.4, "a": 0.3, "b": 0.3}


def _members(n: int = 6_000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = rng.choice(list(SPLIT), n, p=list(SPLIT.values()))
    pre_spend, pre_visits = rng.gamma(2, 500, n).round(), rng.poisson(3, n)
    orders = rng.poisson(0.2 + pre_spend / 20_000 + np.where(arm == "a", 0.2, 0.0))
    return pd.DataFrame({
        "experiment": rng.choice(["e1", "e2"], n), "customer_key": [f"k{i}" for i in range(n)], "arm": arm,
        "orders": orders, "revenue_minor": (orders * rng.gamma(3, 1000, n)).round().astype(int),
        "visits": rng.poisson(2 + 0.3 * pre_visits), "email_opens": rng.poisson(1, n),
        "email_clicks": np.zeros(n, int),  # no variance: no CUPED, no always-valid p-value
        "converted": (orders > 0).astype(int), "pre_spend": pre_spend.astype(int), "pre_visits": pre_visits})


def _per_member(one: pd.DataFrame, outcome: str, arm: str) -> dict:
    """What the results held before moments: the statistics over the members' own values."""
    y, x = one[outcome].to_numpy(float), one[["pre_spend", "pre_visits"]].to_numpy(float)
    t, c = (one.arm == arm).to_numpy(), (one.arm == CONTROL).to_numpy()
    stats = [ArmStats(int(m.sum()), y[m].mean(), y[m].var(ddof=1)) for m in (t, c)]
    out = {"lift": welch_lift(*stats).lift, "p_value": welch_lift(*stats).p_value,
           "always_valid_p": msprt(*stats).p_value if stats[0].var + stats[1].var > 0 else None}
    if y.std() > 0:
        adj = cuped(y, x)
        a = adj.adjusted
        lift = welch_lift(ArmStats(int(t.sum()), a[t].mean(), a[t].var(ddof=1)),
                          ArmStats(int(c.sum()), a[c].mean(), a[c].var(ddof=1)))
        out.update(cuped_lift=lift.lift, cuped_ci_low=lift.ci_low, cuped_variance_reduction=adj.variance_reduction)
    return out


def test_moments_give_the_per_member_statistics():
    members = _members()
    experiments = [Experiment("e1", SPLIT), Experiment("e2", SPLIT)]
    table, srm = results_from_moments(experiments, moments_of_frame(members), NOW)
    assert set(srm) == {"e1", "e2"} and len(table) == 2 * len(OUTCOME_COLUMNS) * 3
    checked = 0
    for exp in ("e1", "e2"):
        one = members[members.experiment == exp]
        for outcome in OUTCOME_COLUMNS:
            for arm in ("a", "b"):
                row = table[(table.experiment == exp) & (table.outcome == outcome) & (table.arm == arm)].iloc[0]
                assert row["n"] == (one.arm == arm).sum()
                for field, expected in _per_member(one, outcome, arm).items():
                    if expected is None:
                        assert pd.isna(row[field]), (exp, outcome, arm, field)
                    else:
                        assert row[field] == pytest.approx(expected, rel=1e-9, abs=1e-12), (exp, outcome, arm, field)
                        checked += 1
    assert checked > 60  # CUPED and mSPRT were compared, not only skipped
    clicks = table[table.outcome == "email_clicks"]
    assert clicks["cuped_lift"].isna().all() and clicks["always_valid_p"].isna().all()


def test_an_experiment_without_its_control_or_a_second_arm_has_no_results():
    members = _members(500)
    members = members[(members.experiment == "e1") & (members.arm != CONTROL) | (members.experiment == "e2")
                      & (members.arm == CONTROL)]
    table, srm = results_from_moments([Experiment("e1", SPLIT), Experiment("e2", SPLIT)], moments_of_frame(members), NOW)
    assert table.empty and srm == {}
