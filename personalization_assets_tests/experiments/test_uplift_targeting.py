"""Uplift targeting: `marts.uplift_scores` ranks customers by the expected incremental conversion
learned from randomized sends, and an audience condition on `uplift_rank` takes the top k."""

from datetime import datetime, timezone

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from personalization_assets.assets import experiments as assets
from personalization_assets.audiences.model import parse
from personalization_assets.audiences.sql import membership_sql, predicate_sql
from personalization_assets.experiments.uplift import top_k_persuadables
from personalization_assets.experiments.uplift_scores import build_uplift_scores

from .test_assets import ALL, NOW, world  # noqa: F401  (the fixture: a warehouse with a holdout's fires)

AT = datetime(2026, 3, 10, tzinfo=timezone.utc)


def _population(n: int, seed: int = 4):
    """Profiles and one randomized send: frequent openers lapsed 120+ days are persuadable (the
    email adds 25 pp); recent buyers buy anyway (no uplift)."""
    rng = np.random.default_rng(seed)
    keys = [f"cus_{i:05d}" for i in range(n)]
    recency, opens = rng.uniform(0, 365, n), rng.poisson(3, n)
    persuadable = (opens >= 3) & (recency > 120)
    treated = rng.random(n) < 0.5
    converted = rng.random(n) < 0.03 + 0.15 * (recency < 60) + 0.25 * (treated & persuadable)
    profiles = pd.DataFrame({"customer_key": keys, "recency_days": recency, "email_opens": opens,
                             "orders_count": rng.poisson(1, n), "historical_value_minor": 0, "email_clicks": 0,
                             "p_alive": None})
    attributed = pd.DataFrame({"experiment": "trigger:cart_abandonment", "customer_key": keys,
                               "arm": np.where(treated, "treatment", "control"), "converted": converted.astype(int)})
    return profiles, attributed, dict(zip(keys, persuadable))


def test_scores_rank_persuadables_first_and_beat_random_on_held_out_members():
    profiles, attributed, persuadable = _population(8000)
    noise = attributed.assign(experiment="global_control")  # the global control's arms are not used
    scores, fit = build_uplift_scores(profiles, pd.concat([attributed, noise]), AT)
    assert fit.reason is None and fit.trained_on == {"treatment": int((attributed.arm == "treatment").sum()),
                                                     "control": int((attributed.arm == "control").sum())}
    assert fit.qini_heldout > fit.qini_random and fit.qini_heldout > 0
    assert list(scores.uplift_rank) == list(range(1, len(profiles) + 1))
    assert scores.uplift_score.is_monotonic_decreasing
    top = scores.head(1000).customer_key
    base = np.mean(list(persuadable.values()))
    assert np.mean([persuadable[k] for k in top]) > 2 * base  # the top is mostly persuadables


def test_too_few_randomized_sends_give_no_scores_and_say_why():
    profiles, attributed, _ = _population(40)
    scores, fit = build_uplift_scores(profiles, attributed, AT)
    assert scores.empty and "too few randomized sends" in fit.reason
    assert str(scores.uplift_rank.dtype) == "int64"  # typed even when empty: conditions compare numbers


def test_an_audience_takes_the_top_k_persuadables_by_uplift_rank():
    profiles, attributed, _ = _population(3000)
    scores, _ = build_uplift_scores(profiles, attributed, AT)
    conn = duckdb.connect()
    conn.execute("create schema marts")
    conn.register("p", profiles.drop(columns="p_alive"))
    conn.register("s", scores.iloc[:-50])  # the last 50 have no score (e.g. new since the model ran)
    conn.execute("create table marts.customer_profiles as select * from p")
    conn.execute("create table marts.uplift_scores as select * from s")
    conn.execute("create table aud_customers as select customer_key from p")
    conn.execute("create table aud_events (customer_key varchar, event varchar, ts double)")
    k = 250
    top = parse({"name": "persuadables", "description": "top-k by uplift",
                 "rule": {"all": [{"trait": "uplift_rank", "op": "<=", "value": k}]}})
    sql, params = membership_sql(top, AT)
    members = {r[0] for r in conn.execute(sql, params).fetchall()}
    assert members == set(top_k_persuadables(list(scores.customer_key), scores.uplift_score.to_numpy(), k))
    pred, params = predicate_sql(top, AT, key="p")  # as the segment membership compiles it
    assert {r[0] for r in conn.execute(f"select p.customer_key from marts.customer_profiles p where {pred}",
                                       params).fetchall()} == members
    positive = parse({"name": "lapsed_persuadables", "description": "d", "rule": {"all": [
        {"trait": "uplift_score", "op": ">", "value": 0}, {"trait": "recency_days", "op": ">", "value": 120}]}})
    sql, params = membership_sql(positive, AT)
    got = {r[0] for r in conn.execute(sql, params).fetchall()}
    scored = scores.iloc[:-50].merge(profiles, on="customer_key")
    assert got == set(scored.customer_key[(scored.uplift_score > 0) & (scored.recency_days > 120)])


def test_the_asset_scores_every_profile_from_the_exposures(world):  # noqa: F811
    warehouse, sent = world
    with warehouse.connect() as conn:
        conn.execute("create schema if not exists marts")
        conn.execute("create table marts.customer_profiles as select customer_key, "
                     "cast(hash(customer_key) % 365 as double) as recency_days, 0 as orders_count from core.customers")
    result = dg.materialize([*ALL, assets.uplift_scores], resources={"warehouse": warehouse})
    assert result.success
    with warehouse.connect() as conn:
        scores = conn.query("select * from marts.uplift_scores")
    meta = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}[assets.UPLIFT_KEY]
    assert meta["dagster/row_count"].value == len(scores) == len(sent)
    assert meta["not_scored_because"].value == "scored" and "qini_heldout" in meta
    assert sorted(scores.uplift_rank) == list(range(1, len(sent) + 1))


def test_only_a_bounded_sample_of_randomized_sends_leaves_the_warehouse(world):  # noqa: F811
    """The asset reads the randomized sends filtered in SQL: the same rows as filtering the whole
    attribution in pandas, and at most `limit` of them, the same ones on every run."""
    from personalization_assets.experiments.pipeline import attributed_in_warehouse, randomized_in_warehouse
    from personalization_assets.experiments.uplift_scores import randomized_sends

    warehouse, _ = world
    assert dg.materialize(ALL[:2], resources={"warehouse": warehouse}).success
    with warehouse.connect() as conn:
        everything = randomized_sends(attributed_in_warehouse(conn)).reset_index(drop=True)
        inside = randomized_in_warehouse(conn)
        sample = randomized_in_warehouse(conn, limit=500)
        again = randomized_in_warehouse(conn, limit=500)
    assert len(everything) > 1_000 and set(everything.arm) == {"control", "treatment"}
    pd.testing.assert_frame_equal(inside, everything, check_dtype=False)
    assert len(sample) == 500 and sample.equals(again)
    assert set(zip(sample.experiment, sample.customer_key)) <= set(zip(everything.experiment, everything.customer_key))
    assert 0.3 < (sample.arm == "treatment").mean() < 0.9  # a sample of both arms, not the first rows of one


def _scores_in(conn, profiles: pd.DataFrame, attributed: pd.DataFrame, chunk_rows: int) -> tuple[pd.DataFrame, object]:
    from personalization_assets.experiments.uplift_scores import write_uplift_scores

    conn.prepare_table("marts", "customer_profiles", profiles)
    conn.replace_frame("marts", "customer_profiles", profiles)
    rows, fit = write_uplift_scores(conn, attributed, AT, chunk_rows=chunk_rows)
    got = conn.query("select * from marts.uplift_scores order by uplift_rank")
    assert rows == len(got)
    got["computed_at"] = pd.to_datetime(got["computed_at"], utc=True)
    return got, fit


def _same_scores(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The same customers in the same order with the same ranks; scores equal up to rounding
    (SQL and numpy may add the terms in another order)."""
    assert list(got.columns) == list(expected.columns)
    assert list(got.customer_key) == list(expected.customer_key)
    assert list(got.uplift_rank) == list(expected.uplift_rank)
    np.testing.assert_allclose(got.uplift_score.to_numpy(float), expected.uplift_score.to_numpy(float),
                               rtol=1e-12, atol=1e-15)
    assert (got.computed_at == expected.computed_at).all()


def _messy(n: int, seed: int):
    """_population with ties (many equal profiles), missing values and a feature the profiles lack."""
    profiles, attributed, _ = _population(n, seed)
    profiles["recency_days"] = profiles["recency_days"].round(-1)
    profiles.loc[profiles.index % 7 == 0, "recency_days"] = None
    profiles["p_alive"] = np.where(profiles.index % 3 == 0, np.nan, 0.5 + (profiles.index % 5) / 10)
    return profiles.drop(columns="email_clicks"), attributed


def test_scores_in_the_warehouse_equal_the_in_memory_scores_on_duckdb(duck):
    profiles, attributed = _messy(3000, 6)
    expected, fit = build_uplift_scores(profiles, attributed, AT)
    assert fit.reason is None and expected.uplift_score.duplicated().any()  # ties: the key decides
    got, got_fit = _scores_in(duck, profiles, attributed, chunk_rows=700)
    assert got_fit == fit
    _same_scores(got, expected)


def test_scores_in_the_warehouse_equal_the_in_memory_scores_on_snowflake_sql():
    from personalization_assets_tests.marts.conftest import fakesnow_connection

    profiles, attributed = _messy(1500, 9)
    expected, fit = build_uplift_scores(profiles, attributed, AT)
    with fakesnow_connection() as snow:
        got, got_fit = _scores_in(snow, profiles, attributed, chunk_rows=1000)
    assert got_fit == fit
    _same_scores(got, expected)


def test_too_few_sends_in_the_warehouse_write_nothing_and_say_why(duck):
    profiles, attributed, _ = _population(40)
    duck.prepare_table("marts", "customer_profiles", profiles)
    duck.replace_frame("marts", "customer_profiles", profiles)
    from personalization_assets.experiments.uplift_scores import write_uplift_scores

    rows, fit = write_uplift_scores(duck, attributed, AT)
    assert rows == 0 and "too few randomized sends" in fit.reason
    assert not duck.table_exists("marts", "uplift_scores")
