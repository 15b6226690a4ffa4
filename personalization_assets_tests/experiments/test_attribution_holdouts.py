"""The attribution rule and the sender's holdout gate (ghost exposures, global control)."""

from datetime import timedelta

import pandas as pd
import pytest
import yaml

from personalization_assets.experiments.assign import CONTROL, assign_arm
from personalization_assets.experiments.attribution import attribute_outcomes
from personalization_assets.experiments.holdouts import ExposureLog, HoldoutGate, declared_experiments

T0 = pd.Timestamp("2026-11-01T10:00:00Z")


def test_outcomes_count_only_inside_the_window_from_the_first_exposure():
    exposures = pd.DataFrame({"experiment": ["e", "e", "e"], "customer_key": ["a", "a", "b"],
                              "arm": ["treatment", "treatment", "control"],
                              "exposed_at": [T0 + timedelta(days=1), T0, T0]})
    outcomes = pd.DataFrame({
        "customer_key": ["a", "a", "a", "a", "a", "c"],
        "occurred_at": [T0 - timedelta(hours=1), T0 + timedelta(hours=2), T0 + timedelta(days=6),
                        T0 + timedelta(days=7), T0 + timedelta(hours=3), T0 + timedelta(hours=1)],
        "kind": ["order", "order", "visit", "order", "email_click", "order"],
        "value_minor": [999, 1500, None, 700, None, 50]})
    out = attribute_outcomes(exposures, outcomes, window=timedelta(days=7)).set_index("customer_key")
    assert out.loc["a", "exposed_at"] == T0
    assert (out.loc["a", ["orders", "revenue_minor", "visits", "email_clicks", "converted"]].tolist()
            == [1, 1500, 1, 1, 1])  # before the exposure and at the window's end: not counted
    assert out.loc["b", ["orders", "revenue_minor", "converted"]].tolist() == [0, 0, 0]  # zeros, not missing
    assert out.loc["a", ["pre_spend", "pre_visits"]].tolist() == [999, 0]  # the CUPED covariate: before exposure
    assert "c" not in out.index


def test_unknown_outcome_kind_is_an_error():
    with pytest.raises(ValueError, match="not attributable"):
        attribute_outcomes(pd.DataFrame(columns=["experiment", "customer_key", "arm", "exposed_at"]),
                           pd.DataFrame({"customer_key": ["a"], "occurred_at": [T0], "kind": ["refund"],
                                         "value_minor": [1]}))


def test_holdouts_are_read_from_trigger_and_segment_yaml(tmp_path):
    path = tmp_path / "triggers.yaml"
    path.write_text(yaml.safe_dump({"triggers": [{"name": "cart_abandonment", "holdout": "10%"},
                                                 {"name": "browse_abandonment"}]}))
    found = declared_experiments(path, global_control="5%",
                                 segment_docs=[{"name": "win_back", "holdout": "20%"}, {"name": "vip"}],
                                 audience_docs=[{"name": "cart_abandonment", "on_enter": {"send": "cart_abandonment"},
                                                 "holdout": "10%"}, {"name": "win_back", "holdout": "20%"}],
                                 send_time_holdout="50%")
    assert [(e.name, e.split["control"]) for e in found] == [
        ("global_control", 0.05), ("trigger:cart_abandonment", 0.10), ("segment:win_back", 0.20),
        ("send_time:preferred_send_hour", 0.50)]
    with pytest.raises(ValueError, match="audience cart_abandonment: holdout of trigger:cart_abandonment"):
        declared_experiments(path, global_control=None, segment_docs=[],
                             audience_docs=[{"name": "cart_abandonment", "on_enter": {"send": "cart_abandonment"},
                                             "holdout": "25%"}])
    path.write_text(yaml.safe_dump({"triggers": [{"name": "x", "holdout": "lots"}]}))
    with pytest.raises(ValueError, match="trigger x"):
        declared_experiments(path, global_control=None, segment_docs=[], audience_docs=[], send_time_holdout=False)


def test_gate_logs_ghosts_for_control_and_exposures_for_treatment_once(tmp_path):
    path = tmp_path / "triggers.yaml"
    path.write_text(yaml.safe_dump({"triggers": [{"name": "cart_abandonment", "holdout": "30%"}]}))
    experiments = declared_experiments(path, global_control="10%", segment_docs=[], audience_docs=[], send_time_holdout=False)
    gate = HoldoutGate(experiments, ExposureLog(tmp_path / "exposures.sqlite"), clock=lambda: 1000.0)
    glob, trig = experiments
    decisions = {}
    for i in range(400):
        key = f"k{i}"
        decisions[key] = gate.decide("cart_abandonment", f"fire-{i}", f"u{i}", customer_key=key)
        gate.decide("cart_abandonment", f"fire-{i}", f"u{i}", customer_key=key)  # a retry logs nothing new
    rows = pd.DataFrame(gate.exposures.rows(), columns=["experiment", "decision_key", "customer_id", "customer_key",
                                                        "arm", "ghost", "exposed_at"])
    assert not rows.duplicated(["experiment", "decision_key"]).any()
    for key, reason in decisions.items():
        in_global_control = assign_arm(glob, key) == CONTROL
        held = in_global_control or assign_arm(trig, key) == CONTROL
        assert (reason is not None) == held
        mine = rows[rows.customer_key == key]
        if in_global_control:  # logged in the global control only, as a ghost
            assert mine[["experiment", "ghost"]].values.tolist() == [["global_control", 1]]
        else:
            assert set(mine.experiment) == {"global_control", "trigger:cart_abandonment"}
            assert mine.set_index("experiment").loc["trigger:cart_abandonment", "ghost"] == int(held)
    assert gate.decide("browse_abandonment", "f-x", "u1", customer_key="k1") in (None, decisions["k1"] if assign_arm(glob, "k1") == CONTROL else None)
    assert gate.exposures.erase({"k3", "u4"}) >= 2


def test_packaged_yaml_declares_holdouts_that_the_trigger_and_segment_loaders_accept():
    from personalization_assets.realtime.definitions import load_trigger_set
    from personalization_assets.audiences.membership import load_segments as load_builtin

    names = {e.name: e for e in declared_experiments()}
    assert {"global_control", "trigger:cart_abandonment", "segment:win_back"} <= set(names)
    assert names["segment:win_back"].stratify_by == "rfm_segment"
    assert load_trigger_set().get("cart_abandonment") and any(s.name == "win_back" for s in load_builtin())


def test_the_packaged_definitions_declare_the_win_back_and_cart_abandonment_holdouts():
    """The segments became audiences (issue 22): their holdouts must still be read from there."""
    declared = {e.name: e for e in declared_experiments(send_time_holdout=False)}
    assert declared["segment:win_back"].stratify_by == "rfm_segment"
    assert "trigger:cart_abandonment" in declared
