"""The demo generator injects a known treatment effect into the cart_abandonment holdout; the
whole demo pipeline (seeded sources, every asset, on a temporary DuckDB) recovers it within the
CI of marts.experiment_results.

The injection is opt-in (`generate(effect=...)`): it adds orders, which other demo tests count.
The fires' decisions go through the sender's real holdout gate into the exposure log the
experiment assets read, as `personalization deliver` would have logged them."""

from datetime import datetime, timezone

import dagster as dg
import duckdb

from personalization_assets import settings
from personalization_assets.demo.generator import InjectedEffect, generate
from personalization_assets.demo.run import run_demo
from personalization_assets.experiments.assign import CONTROL, GLOBAL_CONTROL, assign_arm
from personalization_assets.experiments.calibration import exact_binary_coverage
from personalization_assets.experiments.holdouts import ExposureLog, HoldoutGate, declared_experiments
from personalization_assets.experiments.pipeline import exposure_log_path

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
SEED, SCALE = 11, 1.0
EFFECT = InjectedEffect(trigger="cart_abandonment", base=0.30, lift=0.30)


def test_injection_is_opt_in_and_leaves_the_rest_of_the_data_set_alone():
    plain, injected = generate(SEED, 0.3, NOW), generate(SEED, 0.3, NOW, effect=EFFECT)
    assert plain.fires == [] and len(injected.fires) == len(plain.abandoned_carts) > 0
    assert injected.customers == plain.customers and injected.abandoned_carts == plain.abandoned_carts
    assert injected.orders[:len(plain.orders)] == plain.orders and injected.events[:len(plain.events)] == plain.events
    added = injected.orders[len(plain.orders):]
    assert len(added) == sum(f["converted"] for f in injected.fires)
    assert all(o["status"] == "paid" and datetime.fromisoformat(o["created_at"]) <= NOW for o in added)


def test_the_demo_pipeline_recovers_the_injected_effect_within_its_ci(local_env):
    data = generate(SEED, SCALE, NOW, effect=EFFECT)
    experiments = declared_experiments()
    glob = next(e for e in experiments if e.name == GLOBAL_CONTROL)
    trig = next(e for e in experiments if e.name == f"trigger:{EFFECT.trigger}")
    # What the sender logs: its holdout gate decides each fire at the fire's time.
    local_env.mkdir(parents=True, exist_ok=True)
    at = [0.0]
    gate = HoldoutGate(experiments, ExposureLog(exposure_log_path(local_env)), clock=lambda: at[0])
    for fire in data.fires:
        at[0] = fire["decided_at"].timestamp()
        held = gate.decide(fire["trigger"], fire["fire_key"], fire["customer_id"], customer_key=fire["customer_key"])
        assert (held is None) == fire["treated"]  # the generator's arms are the gate's
    gate.exposures.close()
    in_trial = [f for f in data.fires if assign_arm(glob, f["customer_key"]) != CONTROL]
    n_t = sum(f["treated"] for f in in_trial)
    n_c = len(in_trial) - n_t
    # At this size the Welch interval is trustworthy: exact coverage of the true lift, not a hope.
    assert exact_binary_coverage(n_t, n_c, EFFECT.base, treatment_rate=EFFECT.base + EFFECT.lift) > 0.93

    # the demo seeds in a child process: the effect is passed along, not patched into this one
    outcome = run_demo(seed=SEED, scale=SCALE, now=NOW, instance=dg.DagsterInstance.ephemeral(), effect=EFFECT)
    assert outcome.success, outcome.errors
    assert outcome.data.fires == data.fires and not outcome.failed_checks, outcome.failed_checks
    with duckdb.connect(str(settings.warehouse_path()), read_only=True) as conn:
        crosswalk = dict(conn.execute("select record_id, customer_key from core.customer_crosswalk").fetchall())
        rows = conn.execute("select arm, n, mean, lift, ci_low, ci_high, p_value from marts.experiment_results"
                            " where experiment = ? and outcome = 'converted' order by arm", [trig.name]).fetchall()
    # the keys the gate logged are the golden keys identity resolution gave these people
    assert all(crosswalk[f"crm:{f['customer_id']}"] == f["customer_key"] for f in data.fires)
    (control, treatment) = rows
    assert (control[0], control[1]) == (CONTROL, n_c) and (treatment[0], treatment[1]) == ("treatment", n_t)
    truth = {arm: sum(f["converted"] for f in in_trial if f["treated"] == (arm == "treatment")) for arm in ("control", "treatment")}
    # every injected order is attributed (an unrelated demo order inside the window may add one)
    assert round(control[2] * n_c) >= truth["control"] and round(treatment[2] * n_t) >= truth["treatment"]
    lift, low, high, p = treatment[3:]
    assert low <= EFFECT.lift <= high, (lift, low, high)
    assert low > 0 and p < 0.01  # and the effect is detected, not just compatible
