"""Assignment: deterministic, sticky across reruns and merges, by the declared split; holdout YAML."""

import subprocess
import sys
from collections import Counter

import pytest

from personalization_assets.experiments.assign import (
    CONTROL, TREATMENT, apply_merges, assign_arm, assign_stratified, holdout_experiment, parse_holdout)
from personalization_assets.experiments.stats import sample_ratio_mismatch


@pytest.mark.parametrize("value, share", [("10%", 0.1), (" 2.5 % ", 0.025), (0.3, 0.3)])
def test_parse_holdout(value, share):
    assert parse_holdout(value) == pytest.approx(share)


@pytest.mark.parametrize("value", ["10", "ten%", "0%", "100%", 1.5, True, None])
def test_bad_holdout_names_the_place(value):
    with pytest.raises(ValueError, match="trigger cart"):
        parse_holdout(value, "trigger cart")


def test_arms_follow_the_declared_split_and_pass_srm():
    exp = holdout_experiment("trigger", "cart_abandonment", "10%")
    counts = Counter(assign_arm(exp, f"cust-{i}") for i in range(50_000))
    assert abs(counts[CONTROL] / 50_000 - 0.10) < 0.006
    assert not sample_ratio_mismatch(counts, exp.split).mismatch


def test_assignment_is_the_same_in_a_fresh_interpreter_and_differs_between_experiments():
    a, b = holdout_experiment("trigger", "a", "50%"), holdout_experiment("trigger", "b", "50%")
    keys = [f"k{i}" for i in range(2000)]
    here = [assign_arm(a, k) for k in keys]
    code = ("from personalization_assets.experiments.assign import holdout_experiment, assign_arm;"
            "e = holdout_experiment('trigger', 'a', '50%');"
            "print(''.join('c' if assign_arm(e, f'k{i}') == 'control' else 't' for i in range(2000)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert out == "".join("c" if arm == CONTROL else "t" for arm in here)
    agree = sum(x == assign_arm(b, k) for x, k in zip(here, keys)) / len(keys)
    assert 0.45 < agree < 0.55  # independent salts: arms of two experiments are uncorrelated


def test_stratified_balances_small_strata_and_is_sticky():
    exp = holdout_experiment("segment", "win_back", "50%", stratify_by="rfm_segment")
    strata = {f"c{i}": ("champions" if i < 7 else "at_risk") for i in range(20)}
    arms = assign_stratified(exp, strata)
    for stratum in ("champions", "at_risk"):
        counts = Counter(arms[k] for k, s in strata.items() if s == stratum)
        assert abs(counts[CONTROL] - counts[TREATMENT]) <= 1
    assert assign_stratified(exp, strata) == arms  # rerun: same arms
    grown = dict(strata, **{f"n{i}": "champions" for i in range(5)})
    again = assign_stratified(exp, grown, previous=arms)
    assert all(again[k] == arms[k] for k in arms)  # nobody already assigned moves
    counts = Counter(again[k] for k, s in grown.items() if s == "champions")
    assert abs(counts[CONTROL] - counts[TREATMENT]) <= 1


def test_merge_keeps_the_survivors_arm_and_records_contamination():
    exp = holdout_experiment("trigger", "cart_abandonment", "50%")
    keys = [f"k{i}" for i in range(200)]
    arms = {k: assign_arm(exp, k) for k in keys}
    same = next((a, b) for a in keys for b in keys if a != b and arms[a] == arms[b])
    diff = next((a, b) for a in keys for b in keys if arms[a] != arms[b] and a not in same and b not in same)
    out = apply_merges(exp, arms, [same, diff])
    assert same[0] not in out.arms and diff[0] not in out.arms
    assert out.arms[same[1]] == arms[same[1]] and out.arms[diff[1]] == arms[diff[1]]
    assert out.contaminated == [{"experiment": exp.name, "absorbed_key": diff[0], "survivor_key": diff[1],
                                 "absorbed_arm": arms[diff[0]], "survivor_arm": arms[diff[1]]}]
    rerun = apply_merges(exp, out.arms, [same, diff])  # the same merges seen again change nothing
    assert rerun.arms == out.arms and rerun.contaminated == []
