"""Experiments: who is held out, who was exposed (ghosts included), and the measured lift.

Thin shells over `experiments/pipeline.py`; the lift is computed by the same code as
`personalization lift`. Holdouts are declared in YAML (`holdout: 10%`, `global_control`).
"""

import dagster as dg
import pandas as pd

from .. import settings
from ..heap import releasing
from ..experiments.holdouts import declared_experiments
from ..experiments.pipeline import (ASSIGNMENTS, CROSSWALK_SNAPSHOT, EXPOSURES, RESULTS, attributed_in_pandas,
                                    randomized_in_warehouse,
                                    build_exposures, build_results, exposure_arms,
                                    exposure_log_path,
                                    read_outcomes, results_in_warehouse, write_assignments, write_exposures)
from ..resources.warehouse import Warehouse
from .common import EAGER, WAREHOUSE_POOL, frame_metadata, utc_now

ASSIGNMENTS_KEY = dg.AssetKey(["marts", "experiment_assignments"])
EXPOSURES_KEY = dg.AssetKey(["marts", "experiment_exposures"])
RESULTS_KEY = dg.AssetKey(["marts", "experiment_results"])
INPUTS = [["core", "customers"], ["core", "customer_crosswalk"], ["marts", "segment_membership"],
          ["marts", "customer_profiles"]]
OUTCOME_INPUTS = [["staging", "orders"], ["staging", "events"], ["staging", "email_events"], ["core", "identity_map"]]


def _split(table: str) -> tuple[str, str]:
    schema, _, name = table.partition(".")
    return schema, name


def _write(conn, table: str, frame) -> None:
    schema, name = _split(table)
    conn.prepare_table(schema, name, frame)
    with conn.transaction():
        conn.replace_frame(schema, name, frame)


@dg.asset(key=ASSIGNMENTS_KEY, deps=INPUTS, group_name="experiments", pool=WAREHOUSE_POOL, kinds={"python"},
          automation_condition=EAGER, tags={"pii": "true"},  # customer keys: erased with the person, previews masked
          metadata={"activation/pii_tables": [".".join(CROSSWALK_SNAPSHOT)]})
@releasing  # hand back what the steps before freed (glibc keeps it otherwise)
def experiment_assignments(warehouse: Warehouse) -> dg.MaterializeResult:
    """Each customer's arm in each declared experiment (global control, trigger and segment
    holdouts): a hash of customer_key and the experiment's salt, so the same on every run. After
    an identity merge the survivor's arm wins; `contaminated_by` names the absorbed key when the
    two had different arms. Updated eagerly after the customers and segments."""
    experiments = declared_experiments()
    with warehouse.connect() as conn:
        counts = write_assignments(conn, experiments, utc_now())  # a chunk of customers at a time
        top = conn.query(f"select * from {ASSIGNMENTS} limit 10")
    sizes = counts[counts["arm"].notna()]
    return dg.MaterializeResult(metadata=frame_metadata(
        top, experiments={e.name: {"kind": e.kind, "split": e.split, "stratify_by": e.stratify_by} for e in experiments},
        contaminated=int(counts["contaminated"].sum()),
        **{f"arm_size:{r.experiment}:{r.arm}": dg.MetadataValue.int(int(r.n)) for r in sizes.itertuples()},
        **{"dagster/row_count": dg.MetadataValue.int(int(counts["n"].sum()))}))


@dg.asset(key=EXPOSURES_KEY, deps=[ASSIGNMENTS_KEY, ["marts", "segment_membership"]], group_name="experiments",
          pool=WAREHOUSE_POOL, kinds={"python"}, automation_condition=EAGER, tags={"pii": "true"})
@releasing
def experiment_exposures(warehouse: Warehouse) -> dg.MaterializeResult:
    """Every send decision of an experiment with its arm, at the moment it was taken: the
    sender's (trigger fires, from its exposure log) and the held-out segments'. A control member
    who would have been sent the email is a ghost exposure (`ghost`), so the comparison is
    intent-to-treat; suppressed people are in neither arm. Updated eagerly after the assignments."""
    experiments = declared_experiments()
    log = exposure_log_path(settings.data_dir())
    with warehouse.connect() as conn:
        if conn.dialect == "duckdb":  # the segment members a chunk at a time, their arms joined in SQL
            counts = write_exposures(conn, experiments, log)
        else:
            frame = build_exposures(conn, experiments, exposure_arms(conn, experiments), log)
            _write(conn, EXPOSURES, frame)
            counts = (frame.groupby(["experiment", "arm"]).customer_key.nunique().rename("n").reset_index()
                      if len(frame) else pd.DataFrame(columns=["experiment", "arm", "n"]))
        rows, ghosts = conn.rows(f"select count(*), coalesce(sum(case when ghost then 1 else 0 end), 0) from {EXPOSURES}")[0]
        top = conn.query(f"select * from {EXPOSURES} limit 10")
    return dg.MaterializeResult(metadata=frame_metadata(
        top, ghosts=int(ghosts), **{"dagster/row_count": dg.MetadataValue.int(int(rows))},
        **{f"exposed:{r.experiment}:{r.arm}": dg.MetadataValue.int(int(r.n)) for r in counts.itertuples()}))


@dg.asset_check(asset=EXPOSURES_KEY, blocking=True, pool=WAREHOUSE_POOL,
                description="Sample ratio mismatch: the exposed customers per arm match the declared split "
                            "(chi-square, p < 0.01 fails). A mismatch means broken assignment or logging: "
                            "the lift would be biased, so the results are held back.")
def exposures_match_declared_split(warehouse: Warehouse) -> dg.AssetCheckResult:
    from ..experiments.stats import sample_ratio_mismatch

    with warehouse.connect() as conn:
        counts = conn.query(f"select experiment, arm, count(distinct customer_key) as n from {EXPOSURES} group by 1, 2")
    tests, failing = {}, []
    for exp in declared_experiments():
        observed = {r.arm: int(r.n) for r in counts[counts.experiment == exp.name].itertuples()}
        if sum(observed.values()) == 0:
            continue
        srm = sample_ratio_mismatch(observed, exp.split)
        tests[exp.name] = {"observed": srm.observed, "expected": {k: round(v, 1) for k, v in srm.expected.items()},
                           "chi2": round(srm.chi2, 3), "p_value": srm.p_value}
        if srm.mismatch:
            failing.append(exp.name)
    return dg.AssetCheckResult(passed=not failing, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"mismatched": ", ".join(failing) or "none", "tests": dg.MetadataValue.json(tests),
                                         **{f"srm_p:{k}": float(v["p_value"]) for k, v in tests.items()}})


@dg.asset(key=RESULTS_KEY, deps=[EXPOSURES_KEY, *OUTCOME_INPUTS], group_name="experiments", pool=WAREHOUSE_POOL,
          kinds={"python"}, automation_condition=EAGER)
@releasing
def experiment_results(warehouse: Warehouse) -> dg.MaterializeResult:
    """Per experiment, outcome (converted, orders, revenue_minor, visits, email opens and clicks,
    within 7 days of the first exposure) and arm: n, mean, absolute lift vs the control with its
    95 % Welch CI, relative lift, p-value, the always-valid (mSPRT) p-value safe to watch daily, and
    the CUPED-adjusted lift (pre-period spend and visits) with its variance reduction. The lift,
    CI and p-values are also metadata, so the UI plots them over time. Updated eagerly."""
    experiments = declared_experiments()
    as_of = utc_now()
    with warehouse.connect() as conn:
        if conn.dialect == "duckdb":  # attribution and per-arm moments where the outcomes are: a few rows out
            frame, srm = results_in_warehouse(conn, experiments, as_of)
        else:
            exposures = conn.query(f"select * from {EXPOSURES}")
            assignments = conn.query(f"select experiment, customer_key, contaminated_by from {ASSIGNMENTS}")
            frame, srm = build_results(experiments, exposures, read_outcomes(conn), assignments, as_of)
        _write(conn, RESULTS, frame)
    series = {}
    for r in frame[frame.lift.notna()].itertuples():
        for field in ("lift", "ci_low", "ci_high", "p_value", "always_valid_p"):
            value = getattr(r, field)
            if value == value:  # not NaN
                series[f"{r.experiment}:{r.outcome}:{r.arm}:{field}"] = dg.MetadataValue.float(float(value))
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, srm={k: {"p_value": v.p_value, "mismatch": v.mismatch} for k, v in srm.items()}, **series))


UPLIFT_KEY = dg.AssetKey(["marts", "uplift_scores"])


@dg.asset(key=UPLIFT_KEY, deps=[EXPOSURES_KEY, ["marts", "customer_profiles"], *OUTCOME_INPUTS],
          group_name="experiments", pool=WAREHOUSE_POOL, kinds={"python"}, automation_condition=EAGER,
          tags={"pii": "true"})
@releasing
def uplift_scores(warehouse: Warehouse) -> dg.MaterializeResult:
    """Every customer's expected incremental conversion from an email (`uplift_score`) and rank
    (`uplift_rank`, 1 = the most persuadable), from a two-model uplift trained on past randomized
    sends (trigger and segment holdouts, outcomes attributed as in the results). An audience
    targets the top k with `{trait: uplift_rank, op: "<=", value: k}`. Empty, with the reason in
    the metadata, until both arms have enough members. Updated eagerly after the exposures."""
    from ..experiments.uplift_scores import UPLIFT_SCORES, empty_scores, write_uplift_scores

    with warehouse.connect() as conn:
        # DuckDB: only the randomized sends leave the warehouse, at most TRAINING_SENDS of them
        attributed = randomized_in_warehouse(conn) if conn.dialect == "duckdb" else attributed_in_pandas(conn)
        rows, fit = write_uplift_scores(conn, attributed, utc_now())  # trained on the members, scored in SQL
        del attributed
        if fit.reason:
            _write(conn, UPLIFT_SCORES, empty_scores())
        top = conn.query(f"select * from {UPLIFT_SCORES} order by uplift_rank limit 10")
    qini = {name: dg.MetadataValue.float(float(value)) for name, value in
            (("qini_heldout", fit.qini_heldout), ("qini_random", fit.qini_random)) if value is not None}
    return dg.MaterializeResult(metadata=frame_metadata(
        top, trained_on=fit.trained_on, not_scored_because=fit.reason or "scored", **qini,
        **{"dagster/row_count": dg.MetadataValue.int(rows)}))


defs = dg.Definitions(assets=[experiment_assignments, experiment_exposures, experiment_results, uplift_scores],
                      asset_checks=[exposures_match_declared_split])
