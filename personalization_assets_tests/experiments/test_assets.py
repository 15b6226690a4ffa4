"""The experiment assets on a DuckDB file: a known treatment effect injected into the
cart_abandonment holdout (fires decided by the sender's gate) is recovered within its CI; SRM blocks;
a merge keeps the survivor's arm and is recorded."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from personalization_assets.assets import experiments as assets
from personalization_assets.experiments.assign import CONTROL
from personalization_assets.experiments.holdouts import ExposureLog, HoldoutGate, declared_experiments
from personalization_assets.resources.warehouse import DuckDBWarehouse

from ..marts.conftest import History

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
N = 4000
BASE, EFFECT = 0.06, 0.06  # conversion without the email, and what the email adds
ALL = [assets.experiment_assignments, assets.experiment_exposures, assets.exposures_match_declared_split,
       assets.experiment_results]


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(assets, "utc_now", lambda: NOW)
    warehouse = DuckDBWarehouse(database=str(tmp_path / "warehouse.duckdb"))
    rng = np.random.default_rng(21)
    keys = [f"cus_{i:05d}" for i in range(N)]
    gate = HoldoutGate(declared_experiments(), ExposureLog(tmp_path / "exposures.sqlite"),
                       clock=lambda: (NOW - timedelta(days=10)).timestamp())
    sent = np.array([gate.decide("cart_abandonment", f"fire-{k}", f"u{k}", customer_key=k) is None for k in keys])
    gate.exposures.close()
    converted = rng.random(N) < BASE + EFFECT * sent
    orders = pd.DataFrame({
        "order_id": [f"o{i}" for i in np.flatnonzero(converted)], "customer_record_id": [f"crm:{keys[i]}" for i in np.flatnonzero(converted)],
        "email": None, "status": "completed", "currency": "GBP", "total_minor": 5000, "total_reporting_minor": 5000,
        "fx_rate": 1.0, "created_at": NOW - timedelta(days=9), "cart_id": None})
    with warehouse.connect() as conn:
        History().write(conn)  # the typed, empty input tables
        conn.raw.register("c", pd.DataFrame({"customer_key": keys, "email": [f"{k}@example.com" for k in keys]}))
        conn.raw.execute("insert into core.customers (customer_key, email) select customer_key, email from c")
        conn.raw.execute("insert into core.customer_crosswalk select 'crm:' || customer_key, customer_key from c")
        conn.raw.execute("insert into core.identity_map select 'user_id', 'u' || customer_key, customer_key from c")
        conn.raw.register("o", orders)
        conn.raw.execute("insert into staging.orders select * from o")
    return warehouse, dict(zip(keys, sent))


def test_injected_effect_is_recovered_within_its_ci_and_srm_passes(world):
    warehouse, sent = world
    result = dg.materialize(ALL, resources={"warehouse": warehouse})
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed, check.metadata
    with warehouse.connect() as conn:
        table = conn.query("select * from marts.experiment_results")
        exposures = conn.query("select * from marts.experiment_exposures")
    row = table[(table.experiment == "trigger:cart_abandonment") & (table.outcome == "converted")
                & (table.arm == "treatment")].iloc[0]
    assert row.ci_low <= EFFECT <= row.ci_high and row.ci_low > 0 and row.p_value < 0.001
    assert row.always_valid_p < 0.05
    # the ghosts are exactly the fires held back, and the exposure arms match the assignment table
    trig = exposures[exposures.experiment == "trigger:cart_abandonment"]
    assert set(trig.customer_key[trig.ghost]) == {k for k, s in sent.items() if not s} & set(trig.customer_key)
    meta = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert meta[assets.RESULTS_KEY]["trigger:cart_abandonment:converted:treatment:lift"].value == pytest.approx(row.lift)
    assert meta[assets.RESULTS_KEY]["dagster/row_count"].value == len(table)
    glob = table[(table.experiment == "global_control") & (table.outcome == "converted") & (table.arm == "treatment")]
    assert len(glob) == 1 and glob.lift.iloc[0] > 0


def test_sample_ratio_mismatch_blocks_the_results(world):
    warehouse, _ = world
    assert dg.materialize(ALL[:2], resources={"warehouse": warehouse}).success
    with warehouse.connect() as conn:  # logging lost a third of the control's decisions
        conn.execute("delete from marts.experiment_exposures where experiment = 'trigger:cart_abandonment' "
                     "and arm = 'control' and hash(customer_key) % 3 = 0")
    result = dg.materialize(ALL[:3], resources={"warehouse": warehouse},
                            selection=dg.AssetSelection.checks(assets.exposures_match_declared_split), raise_on_error=False)
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and "trigger:cart_abandonment" in check.metadata["mismatched"].value
    assert not result.success  # blocking


def test_a_merge_keeps_the_survivors_arm_and_is_recorded(world):
    warehouse, _ = world
    assert dg.materialize([assets.experiment_assignments], resources={"warehouse": warehouse}).success
    with warehouse.connect() as conn:
        first = conn.query("select * from marts.experiment_assignments where experiment = 'trigger:cart_abandonment'")
    arms = dict(zip(first.customer_key, first.arm))
    absorbed = next(k for k, a in arms.items() if a == CONTROL)
    survivor = next(k for k, a in arms.items() if a != CONTROL)
    with warehouse.connect() as conn:
        conn.execute("update core.customer_crosswalk set customer_key = ? where customer_key = ?", [survivor, absorbed])
        conn.execute("delete from core.customers where customer_key = ?", [absorbed])
    assert dg.materialize([assets.experiment_assignments], resources={"warehouse": warehouse}).success
    with warehouse.connect() as conn:
        second = conn.query("select * from marts.experiment_assignments where experiment = 'trigger:cart_abandonment'")
    after = second.set_index("customer_key")
    assert absorbed not in after.index and after.loc[survivor, "arm"] == arms[survivor]
    assert after.loc[survivor, "contaminated_by"] == absorbed
    assert (second.drop(columns=["assigned_at", "contaminated_by"]).set_index("customer_key").arm
            == first.set_index("customer_key").arm.drop(absorbed)).all()  # everyone else: same arm on rerun
    assert dg.materialize([assets.experiment_assignments], resources={"warehouse": warehouse}).success
    with warehouse.connect() as conn:  # a later run still knows
        assert conn.scalar("select contaminated_by from marts.experiment_assignments where customer_key = ? "
                           "and experiment = 'trigger:cart_abandonment'", [survivor]) == absorbed


def _win_back_members(warehouse, two_strata: bool) -> None:
    """The first 300 customers in segment win_back since 3 days, and every customer's RFM segment:
    champions below cus_00100 and hibernating above (`two_strata`), or all hibernating."""
    rfm = "case when customer_key < 'cus_00100' then 'champions' else 'hibernating' end" if two_strata else "'hibernating'"
    with warehouse.connect() as conn:
        conn.execute("create schema if not exists marts")
        conn.execute("create table marts.segment_membership (segment varchar, customer_key varchar, since timestamptz)")
        conn.execute("create table marts.customer_profiles (customer_key varchar, rfm_segment varchar)")
        conn.execute("insert into marts.segment_membership select 'win_back', customer_key, ? from core.customers "
                     "order by customer_key limit 300", [NOW - timedelta(days=3)])
        conn.execute(f"insert into marts.customer_profiles select customer_key, {rfm} from core.customers")


def test_segment_holdout_is_stratified_and_its_control_members_are_ghosts(world):
    warehouse, _ = world
    _win_back_members(warehouse, two_strata=True)
    assert dg.materialize(ALL, resources={"warehouse": warehouse}).success
    with warehouse.connect() as conn:
        assigned = conn.query("select * from marts.experiment_assignments where experiment = 'segment:win_back'")
        exposed = conn.query("select * from marts.experiment_exposures where source = 'segment'")
    assert len(assigned) == 300
    for stratum, members in assigned.groupby("stratum"):  # 10 % held out in each RFM stratum, to the member
        assert abs((members.arm == CONTROL).sum() - 0.1 * len(members)) <= 1, stratum
    seg = exposed[exposed.experiment == "segment:win_back"].merge(assigned, on="customer_key", suffixes=("", "_a"))
    assert (seg.arm == seg.arm_a).all() and (seg.ghost == (seg.arm == CONTROL)).all()
    glob = exposed[exposed.experiment == "global_control"]
    assert len(glob) == 300 and set(seg.customer_key).isdisjoint(glob.customer_key[glob.arm == CONTROL])


def test_attribution_in_the_warehouse_equals_the_pandas_rule(world):
    from personalization_assets.experiments.attribution import attribute_outcomes
    from personalization_assets.experiments.pipeline import PRE_PERIOD, attributed_in_warehouse, read_outcomes

    warehouse, _ = world
    assert dg.materialize(ALL[:2], resources={"warehouse": warehouse}).success
    with warehouse.connect() as conn:
        inside = attributed_in_warehouse(conn)
        outside = attribute_outcomes(conn.query("select * from marts.experiment_exposures"), read_outcomes(conn),
                                     pre_period=PRE_PERIOD)
    assert inside["converted"].sum() > 100
    pd.testing.assert_frame_equal(inside.reset_index(drop=True), outside.reset_index(drop=True))


def test_results_from_the_warehouses_moments_equal_those_from_its_members(world):
    """The asset reads per-arm moments, not a row per member: the same table as the per-member
    frame gives, and the same SRM tests."""
    from personalization_assets.experiments.pipeline import (attributed_in_warehouse, results_from_attributed,
                                                             results_in_warehouse)

    warehouse, _ = world
    assert dg.materialize(ALL[:2], resources={"warehouse": warehouse}).success
    with warehouse.connect() as conn:
        inside, inside_srm = results_in_warehouse(conn, declared_experiments(), NOW)
        members, members_srm = results_from_attributed(declared_experiments(), attributed_in_warehouse(conn), NOW)
    assert len(inside) >= 12 and inside["always_valid_p"].notna().any()  # CUPED: test_moments.py (no pre-period here)
    pd.testing.assert_frame_equal(inside, members, rtol=1e-9)
    assert {k: v.mismatch for k, v in inside_srm.items()} == {k: v.mismatch for k, v in members_srm.items()}
    assert {k: v.p_value for k, v in inside_srm.items()} == pytest.approx({k: v.p_value for k, v in members_srm.items()})


def test_exposures_from_the_segment_members_arms_equal_those_from_every_assignment(world, tmp_path):
    from personalization_assets.experiments.pipeline import build_exposures, exposure_arms, exposure_log_path

    warehouse, _ = world
    _win_back_members(warehouse, two_strata=False)
    assert dg.materialize(ALL[:1], resources={"warehouse": warehouse}).success
    experiments = declared_experiments()
    with warehouse.connect() as conn:  # members who joined after the assignments ran: their hash arm
        conn.execute("insert into marts.segment_membership select 'win_back', customer_key, ? from core.customers "
                     "order by customer_key desc limit 50", [NOW - timedelta(days=1)])
        conn.execute("insert into marts.segment_membership values ('win_back', 'cus_new', ?)", [NOW])
        every = conn.query("select * from marts.experiment_assignments")
        arms = exposure_arms(conn, experiments)
        log = exposure_log_path(tmp_path)
        expected = build_exposures(conn, experiments, every, log)
        got = build_exposures(conn, experiments, arms, log)
    assert len(arms) < len(every) / 5 and set(arms.experiment) == {"segment:win_back", "global_control"}
    assert (expected.source == "segment").sum() > 600 and "cus_new" in set(expected.customer_key)
    pd.testing.assert_frame_equal(got, expected)


def test_exposures_written_a_chunk_at_a_time_equal_the_frame_built_in_memory(world, tmp_path):
    """write_exposures (members read 97 at a time, arms joined in SQL, a decision seen twice kept
    once) writes exactly build_exposures' rows: the sender's log, a segment's members with the
    global control's ghosts, new members without an assignment, and a second experiment on the
    same segment whose global-control decisions repeat the first's."""
    from personalization_assets.experiments.assign import Experiment
    from personalization_assets.experiments.pipeline import (EXPOSURES, build_exposures, exposure_log_path,
                                                             write_exposures)

    warehouse, _ = world
    _win_back_members(warehouse, two_strata=False)
    assert dg.materialize(ALL[:1], resources={"warehouse": warehouse}).success
    experiments = declared_experiments() + [Experiment("segment:win_back_b", {CONTROL: 0.3, "treatment": 0.7},
                                                       "segment", "win_back")]
    log = exposure_log_path(tmp_path)
    with warehouse.connect() as conn:
        conn.execute("insert into marts.segment_membership values ('win_back', 'cus_new', ?)", [NOW])
        expected = build_exposures(conn, experiments, conn.query("select * from marts.experiment_assignments"), log)
        counts = write_exposures(conn, experiments, log, chunk_rows=97)
        got = conn.query(f"select * from {EXPOSURES}")
        assert not conn.table_exists("marts", "experiment_exposures__next")
    order = ["experiment", "decision_key"]
    assert (expected.source == "trigger").sum() > 100 and (expected.source == "segment").sum() > 500
    assert "cus_new" in set(expected.customer_key)
    pd.testing.assert_frame_equal(got.sort_values(order, ignore_index=True),
                                  expected.sort_values(order, ignore_index=True), check_dtype=False)
    assert dict(zip(zip(counts.experiment, counts.arm), counts.n)) == \
        expected.groupby(["experiment", "arm"]).customer_key.nunique().to_dict()


def test_exposures_on_snowflake_sql_equal_those_written_on_duckdb(world, tmp_path):
    """Off DuckDB the asset builds the exposures in memory (`exposure_arms`, `build_exposures`):
    on fakesnow, from the same tables, the rows equal what `write_exposures` wrote on DuckDB."""
    from personalization_assets.experiments.pipeline import (EXPOSURES, build_exposures, exposure_arms,
                                                             exposure_log_path, write_exposures)
    from personalization_assets_tests.marts.conftest import fakesnow_connection

    warehouse, _ = world
    _win_back_members(warehouse, two_strata=False)
    assert dg.materialize(ALL[:1], resources={"warehouse": warehouse}).success
    experiments, log = declared_experiments(), exposure_log_path(tmp_path)
    read = ("core.customers", "marts.customer_profiles", "marts.segment_membership", "marts.experiment_assignments")
    with warehouse.connect() as conn:
        conn.execute("insert into marts.segment_membership values ('win_back', 'cus_new', ?)", [NOW])
        write_exposures(conn, experiments, log)
        expected = conn.query(f"select * from {EXPOSURES}")
        tables = {name: conn.query(f"select * from {name}") for name in read if conn.table_exists(*name.split("."))}
    assert {"marts.segment_membership", "marts.experiment_assignments"} <= set(tables)
    with fakesnow_connection() as snow:
        for name, frame in tables.items():
            snow.prepare_table(*name.split("."), frame)
            snow.replace_frame(*name.split("."), frame)
        got = build_exposures(snow, experiments, exposure_arms(snow, experiments), log)
    order = ["experiment", "decision_key"]
    assert (got.source == "segment").sum() > 500 and "cus_new" in set(got.customer_key)
    assert (got.source == "trigger").sum() > 100 and got.ghost.any()
    got["exposed_at"] = pd.to_datetime(got["exposed_at"], utc=True)
    expected["exposed_at"] = pd.to_datetime(expected["exposed_at"], utc=True)
    pd.testing.assert_frame_equal(got.sort_values(order, ignore_index=True)[list(expected.columns)],
                                  expected.sort_values(order, ignore_index=True), check_dtype=False)


def _reference_assignments(conn, experiments, as_of) -> pd.DataFrame:
    """The assignment rules over whole frames, the way they were computed before the chunked
    writer (every customer, previous row and crosswalk in memory): the oracle it must equal."""
    from personalization_assets.experiments.assign import apply_merges, assign_arm, assign_stratified

    now = conn.query("select record_id, customer_key from core.customer_crosswalk")
    merges = []
    if conn.table_exists("ops", "experiment_crosswalk"):
        before = conn.query("select record_id, customer_key from ops.experiment_crosswalk order by record_id")
        moved = before.merge(now, on="record_id", suffixes=("_old", "_new"))
        moved = moved[moved.customer_key_old != moved.customer_key_new]
        pairs = moved[~moved.customer_key_old.isin(set(now.customer_key))].drop_duplicates("customer_key_old")
        merges = list(zip(pairs.customer_key_old, pairs.customer_key_new))
    customers = conn.query("select customer_key from core.customers")["customer_key"].astype(str).tolist()
    has_previous = conn.table_exists("marts", "experiment_assignments")
    frames = []
    for exp in experiments:
        previous = (conn.query("select customer_key, arm, contaminated_by from marts.experiment_assignments "
                               "where experiment = ?", [exp.name]) if has_previous
                    else pd.DataFrame(columns=["customer_key", "arm", "contaminated_by"]))
        prev = dict(zip(previous["customer_key"], previous["arm"]))
        if exp.kind == "segment":
            members = conn.query("select m.customer_key, p.rfm_segment from marts.segment_membership m left join "
                                 "marts.customer_profiles p on p.customer_key = m.customer_key where m.segment = ?",
                                 [exp.target])
            keys = members["customer_key"].astype(str).tolist()
            strata = dict(zip(keys, members["rfm_segment"].fillna("unknown").astype(str)))
            arms = (assign_stratified(exp, strata, prev) if exp.stratify_by
                    else {k: prev.get(k) or assign_arm(exp, k) for k in keys})
        else:
            keys, strata = customers, {}
            arms = {k: assign_arm(exp, k) for k in keys}
        merged = apply_merges(exp, {**prev, **arms}, merges)
        mine = previous[previous.contaminated_by.notna()]
        contaminated = dict(zip(mine.customer_key, mine.contaminated_by))
        contaminated.update({c["survivor_key"]: c["absorbed_key"] for c in merged.contaminated})
        frames.append(pd.DataFrame({
            "experiment": exp.name, "kind": exp.kind, "customer_key": keys,
            "arm": [merged.arms.get(k, arms[k]) for k in keys], "stratum": [strata.get(k) for k in keys],
            "contaminated_by": [contaminated.get(k) for k in keys], "assigned_at": pd.Timestamp(as_of)}))
    out = pd.concat(frames, ignore_index=True)
    out["assigned_at"] = pd.to_datetime(out["assigned_at"], utc=True)
    return out


def _in_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["experiment", "customer_key"], ignore_index=True)


def test_assignments_written_a_chunk_at_a_time_equal_the_rules_over_whole_frames(world):
    """A first run, then a merge and new segment members: each run's table equals the rules
    applied to whole frames (previous rows, stratified and sticky segments, contamination), in
    chunks of 700 customers, and the crosswalk is remembered for the next run."""
    from personalization_assets.experiments.assign import Experiment
    from personalization_assets.experiments.pipeline import ASSIGNMENTS, build_assignments, write_assignments

    warehouse, _ = world
    # the declared ones (global, triggers, a stratified segment) and a plain segment holdout (sticky)
    experiments = declared_experiments() + [Experiment("segment:win_back_plain", {CONTROL: 0.2, "treatment": 0.8},
                                                       "segment", "win_back")]
    _win_back_members(warehouse, two_strata=True)
    for run in range(3):
        with warehouse.connect() as conn:
            expected = _reference_assignments(conn, experiments, NOW + timedelta(days=run))
            built = build_assignments(conn, experiments, NOW + timedelta(days=run))
            counts = write_assignments(conn, experiments, NOW + timedelta(days=run), chunk_rows=700)
            got = conn.query(f"select * from {ASSIGNMENTS}")
            assert not conn.table_exists("marts", "experiment_assignments__next")
            remembered = conn.query("select * from ops.experiment_crosswalk order by record_id")
            crosswalk = conn.query("select record_id, customer_key from core.customer_crosswalk order by record_id")
        pd.testing.assert_frame_equal(remembered, crosswalk, check_dtype=False)
        got["assigned_at"] = pd.to_datetime(got["assigned_at"], utc=True)
        pd.testing.assert_frame_equal(_in_order(got), _in_order(expected), check_dtype=False)
        pd.testing.assert_frame_equal(_in_order(built), _in_order(expected), check_dtype=False)
        assert int(counts["n"].sum()) == len(expected)
        contaminated = int(expected.contaminated_by.notna().sum())
        assert int(counts["contaminated"].sum()) == contaminated and (contaminated > 0) == (run > 0)
        assert expected.stratum.notna().sum() >= 600
        arms = expected[expected.experiment == "trigger:cart_abandonment"].set_index("customer_key").arm
        plain = expected[expected.experiment == "segment:win_back_plain"].set_index("customer_key").arm
        with warehouse.connect() as conn:  # merges across arms and new segment members for the next run
            absorbed, survivor = arms[arms == CONTROL].index[run], arms[arms != CONTROL].index[run]
            conn.execute("update core.customer_crosswalk set customer_key = ? where customer_key = ?", [survivor, absorbed])
            conn.execute("delete from core.customers where customer_key = ?", [absorbed])
            # and within the plain segment: a control member absorbed by a treated one
            absorbed, survivor = plain[plain == CONTROL].index[run], plain[plain != CONTROL].index[run + 5]
            conn.execute("update core.customer_crosswalk set customer_key = ? where customer_key = ?", [survivor, absorbed])
            conn.execute("delete from core.customers where customer_key = ?", [absorbed])
            conn.execute("delete from marts.segment_membership where customer_key = ?", [absorbed])
            # members assigned under an earlier split keep their arm (sticky), whatever their hash says now
            conn.execute("update marts.experiment_assignments set arm = 'control' where experiment = "
                         "'segment:win_back_plain' and arm = 'treatment' and customer_key in (select customer_key "
                         "from marts.segment_membership order by customer_key limit 60)")
            conn.execute("insert into marts.segment_membership select 'win_back', customer_key, ? from core.customers "
                         "where customer_key not in (select customer_key from marts.segment_membership) "
                         "order by customer_key desc limit 40", [NOW])


def test_assignments_written_a_chunk_at_a_time_on_snowflake_sql():
    from personalization_assets.experiments.pipeline import ASSIGNMENTS, build_assignments, write_assignments
    from personalization_assets_tests.marts.conftest import fakesnow_connection


    keys = pd.DataFrame({"customer_key": [f"cus_{i:03d}" for i in range(120)]})
    experiments = declared_experiments()
    with fakesnow_connection() as snow:
        for name, frame in {"customers": keys, "customer_crosswalk": keys.assign(record_id="crm:" + keys.customer_key)}.items():
            snow.prepare_table("core", name, frame)
            snow.replace_frame("core", name, frame)
        for _ in range(2):  # the second run reads the first run's rows
            expected = build_assignments(snow, experiments, NOW)
            counts = write_assignments(snow, experiments, NOW, chunk_rows=50)
            got = snow.query(f"select * from {ASSIGNMENTS}")
    got["assigned_at"] = pd.to_datetime(got["assigned_at"], utc=True)
    assert len(expected) >= 3 * len(keys) and int(counts["n"].sum()) == len(expected)
    pd.testing.assert_frame_equal(got.sort_values(["experiment", "customer_key"], ignore_index=True),
                                  expected.sort_values(["experiment", "customer_key"], ignore_index=True),
                                  check_dtype=False)
