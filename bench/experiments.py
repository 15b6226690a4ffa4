"""Benchmark: calibration of the experiment statistics, and the results at scale.

    python -m bench.experiments [--experiments 2000] [--days 30] [--scale-customers 0]

1. A/A coverage: in N A/A experiments at the demo's conversion rate (5 %, 5,000 per arm) and on
   zero-inflated spend, how often the 95 % Welch CI covers 0 (target 95 % +- 1 %); beside it the
   EXACT coverage (every binomial outcome enumerated, `experiments/calibration.py`), because N
   simulations estimate it with a Monte Carlo sd of sqrt(.95 * .05 / N) (0.49 pp at N = 2,000:
   a calibrated interval lands outside 95 +- 1 % in ~4 % of seeds, as seed 2026 did: 93.9 %);
   and the exact coverage at a 10 % holdout of small audiences, where the interval is NOT
   calibrated (an arm with a handful of conversions has a variance near 0).
2. Peeking: N A/A experiments watched daily for 30 days (300 per arm per day); how often the mSPRT
   always-valid p-value ever drops below 0.05 (target <= 5 %), beside the naive Welch p-value
   checked at every peek (which inflates false positives).
3. Uplift: Qini coefficient of the two-model uplift on a simulated randomized send (held-out 30 %).
4. With --scale-customers C: `build_results` (attribution + Welch + mSPRT + CUPED) for C customers
   and 10 C events, in process, timed (the target is 1M / 10M in under 30 s).
Seeded: every run prints the same figures.
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from personalization_assets.experiments.calibration import exact_binary_coverage, monte_carlo_sd
from personalization_assets.experiments.stats import ArmStats, msprt, welch_lift

CONVERSION = 0.05


def _binary(n: int, k: int) -> ArmStats:
    """An arm of n 0/1 outcomes with k ones, exactly as arm_stats would give it."""
    mean = k / n
    return ArmStats(n, mean, (k - n * mean * mean) / (n - 1))


def aa_coverage(experiments: int, n: int, rng: np.random.Generator) -> dict:
    covered_binary = covered_spend = 0
    for _ in range(experiments):
        t, c = rng.binomial(n, CONVERSION), rng.binomial(n, CONVERSION)
        lift = welch_lift(_binary(n, t), _binary(n, c))
        covered_binary += lift.ci_low <= 0 <= lift.ci_high
        spend = [np.where(rng.random(2000) < CONVERSION, rng.gamma(1.5, 4000, 2000), 0.0) for _ in range(2)]
        s = welch_lift(ArmStats(2000, spend[0].mean(), spend[0].var(ddof=1)), ArmStats(2000, spend[1].mean(), spend[1].var(ddof=1)))
        covered_spend += s.ci_low <= 0 <= s.ci_high
    return {"binary": covered_binary / experiments, "spend": covered_spend / experiments}


def peeking(experiments: int, days: int, per_day: int, rng: np.random.Generator) -> dict:
    always_valid = naive = 0
    for _ in range(experiments):
        kt = np.cumsum(rng.binomial(per_day, CONVERSION, days))
        kc = np.cumsum(rng.binomial(per_day, CONVERSION, days))
        ns = per_day * np.arange(1, days + 1)
        av_min, naive_hit = 1.0, False
        for n, a, b in zip(ns, kt, kc):
            t, c = _binary(int(n), int(a)), _binary(int(n), int(b))
            av_min = min(av_min, msprt(t, c).p_value)
            p = welch_lift(t, c).p_value
            naive_hit |= p is not None and p < 0.05
        always_valid += av_min < 0.05
        naive += naive_hit
    return {"msprt": always_valid / experiments, "naive_welch": naive / experiments}


def at_scale(customers: int) -> dict:
    from personalization_assets.experiments.assign import holdout_experiment, assign_arm
    from personalization_assets.experiments.pipeline import build_results

    rng = np.random.default_rng(1)
    now = datetime(2026, 3, 10, tzinfo=timezone.utc)
    exp = holdout_experiment("trigger", "cart_abandonment", "10%")
    keys = np.array([f"cus_{i:07d}" for i in range(customers)], dtype=object)
    started = time.perf_counter()
    arms = np.array([assign_arm(exp, k) for k in keys], dtype=object)
    assign_s = time.perf_counter() - started
    exposed_at = pd.Timestamp(now - timedelta(days=10)) + pd.to_timedelta(rng.integers(0, 86400, customers), unit="s")
    exposures = pd.DataFrame({"experiment": exp.name, "customer_key": keys, "arm": arms, "exposed_at": exposed_at})
    events = 10 * customers
    who = rng.integers(0, customers, events)
    kind = rng.choice(np.array(["visit", "order", "email_open", "email_click"], dtype=object), events, p=[0.8, 0.05, 0.1, 0.05])
    outcomes = pd.DataFrame({"customer_key": keys[who], "kind": kind,
                             "occurred_at": pd.Timestamp(now - timedelta(days=40)) + pd.to_timedelta(rng.integers(0, 40 * 86400, events), unit="s"),
                             "value_minor": np.where(kind == "order", rng.integers(500, 20000, events), 0)})
    assignments = pd.DataFrame({"experiment": exp.name, "customer_key": keys, "contaminated_by": None})
    started = time.perf_counter()
    table, _ = build_results([exp], exposures, outcomes, assignments, now)
    results_s = time.perf_counter() - started
    return {"customers": customers, "events": events, "assign_s": assign_s, "results_s": results_s, "rows": len(table)}


def uplift_qini(n: int, rng: np.random.Generator) -> dict:
    """Two-model uplift on a simulated randomized send (persuadable: frequent visitors lapsed
    120+ days; frequent recent buyers buy anyway), trained on 70 %, Qini on the held-out 30 %."""
    from personalization_assets.experiments.uplift import TwoModelUplift, qini

    visits, recency = rng.poisson(3, n).astype(float), rng.uniform(0, 365, n)
    persuadable = (visits >= 3) & (recency > 120)
    treated = rng.random(n) < 0.5
    y = (rng.random(n) < 0.02 + 0.10 * (recency < 60) + 0.12 * (treated & persuadable)).astype(float)
    x = np.column_stack([visits, recency, visits * (recency > 120)])
    train = rng.random(n) < 0.7
    scores = TwoModelUplift.fit(x[train], treated[train], y[train]).predict(x[~train])
    return {"model": qini(scores, treated[~train], y[~train]).coefficient,
            "buyers": qini(-recency[~train], treated[~train], y[~train]).coefficient,
            "random": qini(rng.random((~train).sum()), treated[~train], y[~train]).coefficient}


def asset_scale(customers: int) -> dict:
    """The three experiment tables as their assets compute them, on a DuckDB warehouse generated by
    bench.marts (C customers, 10 C events, 2 C orders) and a sender exposure log of one cart
    fire per customer. Each step timed with its reads and writes."""
    import sqlite3
    import tempfile
    from pathlib import Path

    import duckdb

    from bench.marts import AS_OF, generate
    from personalization_assets.experiments.holdouts import ExposureLog, declared_experiments
    from personalization_assets.experiments.assign import assign_arm, CONTROL, GLOBAL_CONTROL
    from personalization_assets.experiments.pipeline import (_OUTCOMES, attributed_in_warehouse, build_assignments,
                                                             build_exposures, results_from_attributed)
    from personalization_assets.marts.inputs import input_ctes
    from personalization_assets.warehouse import WarehouseConnection

    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-experiments-") as tmp:
        db = Path(tmp) / "warehouse.duckdb"
        out["generate_s"] = generate(db, customers, 10 * customers)
        experiments = [e for e in declared_experiments() if e.kind in ("global", "trigger")]
        glob, trig = (next(e for e in experiments if e.kind == kind) for kind in ("global", "trigger"))
        started = time.perf_counter()
        ExposureLog(Path(tmp) / "exposures.sqlite").close()
        log = sqlite3.connect(Path(tmp) / "exposures.sqlite")
        at = (AS_OF - timedelta(days=5)).timestamp()
        rows = []
        for i in range(customers):
            key = f"c{i}"
            g = assign_arm(glob, key)
            rows.append((GLOBAL_CONTROL, f"f{i}", key, key, g, int(g == CONTROL), at))
            if g != CONTROL:
                t = assign_arm(trig, key)
                rows.append((trig.name, f"f{i}", key, key, t, int(t == CONTROL), at))
        log.executemany("insert into exposures values (?, ?, ?, ?, ?, ?, ?)", rows)
        log.commit()
        log.close()
        out["log_s"] = time.perf_counter() - started
        conn = WarehouseConnection(duckdb.connect(str(db)), "duckdb")

        def write(table, frame):
            schema, name = table.split(".")
            conn.prepare_table(schema, name, frame)
            with conn.transaction():
                conn.replace_frame(schema, name, frame)

        started = time.perf_counter()
        assignments = build_assignments(conn, experiments, AS_OF)
        write("marts.experiment_assignments", assignments)
        out["assignments_s"] = time.perf_counter() - started
        started = time.perf_counter()
        exposures = build_exposures(conn, experiments, assignments, Path(tmp) / "exposures.sqlite")
        write("marts.experiment_exposures", exposures)
        out["exposures_s"] = time.perf_counter() - started
        started = time.perf_counter()  # as the asset does on DuckDB: attribution inside the warehouse
        attributed = attributed_in_warehouse(conn)
        out["read_s"] = time.perf_counter() - started
        table, _ = results_from_attributed(experiments, attributed, AS_OF)
        write("marts.experiment_results", table)
        out["results_s"] = time.perf_counter() - started
        out["outcomes"] = int(conn.scalar(f"{input_ctes(conn)}\nselect count(*) from ({_OUTCOMES}) o"))
        out["exposures"] = len(exposures)
        conn.raw.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-arm", type=int, default=5000, help="members per arm of an A/A coverage experiment")
    parser.add_argument("--per-day", type=int, default=300, help="new members per arm per day when peeking")
    parser.add_argument("--scale-customers", type=int, default=0, help="also time build_results at this size (0: skip)")
    parser.add_argument("--asset-scale", type=int, default=0, help="also time the three experiment assets' work on a "
                        "generated warehouse of this many customers (10x events; 0: skip)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    cov = aa_coverage(args.experiments, args.per_arm, rng)
    sd = monte_carlo_sd(args.experiments)
    exact = exact_binary_coverage(args.per_arm, args.per_arm, CONVERSION)
    z = (cov["binary"] - exact) / sd
    print(f"A/A coverage of the 95% Welch CI over {args.experiments} experiments (Monte Carlo sd {sd:.2%}): "
          f"conversion {cov['binary']:.1%} ({z:+.1f} sd from the exact {exact:.2%} at {CONVERSION:.0%}, "
          f"{args.per_arm:,} per arm: {'calibrated' if abs(exact - 0.95) <= 0.01 else 'NOT calibrated'}; "
          f"the simulation {'agrees' if abs(z) <= 2.58 else 'DISAGREES'} at 99%), spend {cov['spend']:.1%}  "
          f"[{time.perf_counter() - started:.1f} s]")
    small = {n: exact_binary_coverage(n - n // 10, n // 10, CONVERSION) for n in (200, 1000, 5000, 20000)}
    print("exact A/A coverage at a 10% holdout, 5% conversion, by audience size: "
          + ", ".join(f"{n:,} -> {c:.1%}" for n, c in small.items())
          + " (fewer than ~10 control conversions: the Welch CI is too narrow)")
    started = time.perf_counter()
    peek = peeking(args.experiments, args.days, args.per_day, rng)
    print(f"A/A watched daily for {args.days} days ({args.experiments} experiments): false positives "
          f"mSPRT always-valid {peek['msprt']:.1%} (target <= 5%), naive Welch at every peek {peek['naive_welch']:.1%}  "
          f"[{time.perf_counter() - started:.1f} s]")
    q = uplift_qini(100_000, rng)
    print(f"uplift (two-model) on a simulated randomized send, held-out Qini coefficient: {q['model']:.4f} "
          f"(targeting likely buyers {q['buyers']:.4f}, random {q['random']:.4f})")
    if args.scale_customers:
        s = at_scale(args.scale_customers)
        print(f"build_results: {s['customers']:,} customers, {s['events']:,} events: {s['results_s']:.1f} s "
              f"(assignment hashing {s['assign_s']:.1f} s); {s['rows']} result rows; "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.asset_scale:
        a = asset_scale(args.asset_scale)
        print(f"assets on a generated warehouse ({args.asset_scale:,} customers, {a['outcomes']:,} outcome rows, "
              f"{a['exposures']:,} exposures): assignments {a['assignments_s']:.1f} s, exposures {a['exposures_s']:.1f} s, "
              f"results {a['results_s']:.1f} s (of which attribution in DuckDB {a['read_s']:.1f} s); generator {a['generate_s']:.1f} s; "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
