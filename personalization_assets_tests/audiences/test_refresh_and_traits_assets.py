"""Honoured refresh (a definition's cron is its asset's automation and freshness), and the Dagster
layer of computed traits and audience memberships on a temporary DuckDB warehouse."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pandas as pd
import pytest

from personalization_assets.assets import audiences as assets
from personalization_assets.assets.common import EAGER
from personalization_assets.audiences import traits as tr
from personalization_assets.audiences.model import DefinitionError, load_builtin, parse
from personalization_assets.audiences.refresh import max_gap, refresh_of
from personalization_assets.audiences.traits_store import TraitStore
from personalization_assets.resources.warehouse import DuckDBWarehouse

from .test_traits import DAYS, START, history, warehouse

RULE = {"event": "product viewed", "exists": True, "within": "1d"}


@pytest.mark.parametrize("cron, gap", [
    ("*/15 * * * *", timedelta(minutes=15)), ("0 * * * *", timedelta(hours=1)), ("0 6 * * *", timedelta(days=1)),
    ("0 6 * * 1", timedelta(days=7)), ("0 9,17 * * 1-5", timedelta(hours=64)), ("0 0 1 * *", timedelta(days=31)),
    ("30 2 */2 * *", timedelta(days=2)), ("0 0 29 2 *", timedelta(days=4 * 365 + 1)),
])
def test_the_longest_gap_between_ticks(cron, gap):
    assert max_gap(cron) == gap


@pytest.mark.parametrize("bad", ["61 * * * *", "* * *", "0 6 * * MON", "0 0 31 2 *", "*/0 * * * *"])
def test_a_bad_cron_names_the_audience(bad):
    with pytest.raises(DefinitionError, match="audience 'x': refresh"):
        refresh_of(parse({"name": "x", "refresh": bad, "rule": RULE}))


def test_a_definitions_cron_becomes_its_assets_condition_and_freshness():
    spec = assets.audience_spec(parse({"name": "quarterly", "refresh": "*/15 * * * *", "rule": RULE}))
    assert spec.key == dg.AssetKey(["audiences", "quarterly"])
    assert "*/15 * * * *" in spec.automation_condition.get_label() and "*/15 * * * *" in spec.description
    assert spec.freshness_policy == dg.FreshnessPolicy.cron(deadline_cron="*/15 * * * *",
                                                            lower_bound_delta=timedelta(minutes=15))
    for eager in ({}, {"refresh": "eager"}):
        spec = assets.audience_spec(parse({"name": "follows", **eager, "rule": RULE}))
        assert spec.automation_condition == EAGER and "eager" in spec.description
    # the packaged definitions: each asset carries its own declared cron
    specs = {s.key.path[-1]: s for s in assets.audience_memberships.specs}
    for a in load_builtin():
        assert (a.refresh or "eager") in (specs[a.name].automation_condition.get_label() or "") + " eager"
        if a.refresh:
            assert specs[a.name].freshness_policy.deadline_cron == a.refresh


def test_the_cron_condition_requests_a_refresh_once_per_tick():
    spec = assets.audience_spec(parse({"name": "quarterly", "refresh": "*/15 * * * *", "rule": RULE}))

    @dg.multi_asset(specs=[spec])
    def quarterly():
        yield dg.MaterializeResult(asset_key=spec.key)

    defs = dg.Definitions(assets=[quarterly, dg.AssetSpec(["staging", "events"]), dg.AssetSpec(["core", "identity_map"])])
    instance = dg.DagsterInstance.ephemeral()
    t0 = datetime(2026, 5, 1, 10, 0, tzinfo=timezone.utc)
    cursor, requested = None, []
    for minutes in (2, 7, 14, 16, 20, 29, 31):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                                   evaluation_time=t0 + timedelta(minutes=minutes))
        cursor = result.cursor
        if result.get_num_requested(spec.key):
            requested.append(minutes)
            dg.materialize([quarterly], instance=instance, selection=[spec.key])
    assert requested == [16, 31]  # the ticks at 10:15 and 10:30, each once


def test_computed_traits_partition_by_partition_equals_a_rebuild_and_reach_the_engines_store(tmp_path, monkeypatch):
    db, store = tmp_path / "w.duckdb", tmp_path / "trigger_guard.sqlite"
    warehouse(db, history(11, people=30, n=1500))
    now = START + timedelta(days=DAYS - 1, hours=9, minutes=40)
    monkeypatch.setenv("PERSONALIZATION_NOW", now.isoformat())
    resources = {"warehouse": DuckDBWarehouse(database=str(db))}
    config = {"ops": {"marts__computed_traits": {"config": {"trait_store_path": str(store)}}}}

    def run(day: str):
        result = dg.materialize([assets.computed_traits], resources=resources, partition_key=day, run_config=config)
        return result.asset_materializations_for_node("marts__computed_traits")[0].metadata

    def snapshot() -> pd.DataFrame:
        con = duckdb.connect(str(db))
        try:
            return con.execute(f"select * from {tr.SNAPSHOT} order by customer_key").df()
        finally:
            con.close()

    days = [(START + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(DAYS + 1)]
    first = run(days[0])
    assert first["folded"].value.startswith("all of staging.events")  # no state yet: a full build
    for day in days[1:]:
        meta = run(day)
        assert meta["folded"].value.startswith(day)  # only that day's events
    incremental = snapshot()

    con = duckdb.connect(str(db))
    con.execute("delete from ops.cursors where name = 'computed_traits'")  # as if the traits changed
    con.close()
    assert run(days[-1])["folded"].value.startswith("all of staging.events")
    pd.testing.assert_frame_equal(incremental, snapshot())

    declared = tr.declared_traits(load_builtin())
    assert set(declared) <= set(incremental.columns) and incremental["views_7d"].gt(0).sum() > 5
    assert (incremental["as_of"] == pd.Timestamp(tr.aligned(now, tr.bucket_seconds(declared)))).all()
    for row in incremental.to_dict("records"):  # the engine reads the warehouse's numbers per userId
        if row["customer_key"].startswith("c"):
            values, as_of = TraitStore(store).traits("u" + row["customer_key"][1:])
            assert values["views_7d"] == row["views_7d"] and values["top_category_30d"] == row["top_category_30d"]
            assert as_of == tr.aligned(now, 3600)


def test_each_audience_asset_holds_its_members_and_shows_the_preview(tmp_path, monkeypatch):
    db = tmp_path / "w.duckdb"
    frame = history(12, people=30, n=2500)
    never_ordered = frame["anonymous_id"].str[1:].astype(int) % 2 == 0
    warehouse(db, frame[~(never_ordered & (frame["event"] == "order completed"))])
    now = START + timedelta(days=DAYS - 1, hours=9, minutes=40)
    monkeypatch.setenv("PERSONALIZATION_NOW", now.isoformat())
    event_only = [dg.AssetKey(["audiences", a]) for a in ("category_browsers", "cart_abandonment")]
    result = dg.materialize([assets.audience_memberships], selection=event_only,
                            resources={"warehouse": DuckDBWarehouse(database=str(db))})
    con = duckdb.connect(str(db))
    members = con.execute("select customer_key from audiences.category_browsers order by 1").df()
    con.close()
    meta = {m.asset_key.path[-1]: m.metadata for m in result.get_asset_materialization_events()
            and [e.materialization for e in result.get_asset_materialization_events()]}
    browsers = meta["category_browsers"]
    assert browsers["size"].value == browsers["dagster/row_count"].value == len(members) > 0
    assert "cart_abandonment" in browsers["overlap"].value  # read from the other asset's table
    shown = browsers["audience_preview"].value
    assert f"**category_browsers**: {len(members)} members" in shown and "views_7d" in shown
    assert members["customer_key"].iloc[0] not in shown  # member keys are masked in the UI


def test_an_audience_depends_on_the_inputs_of_the_audiences_it_excludes():
    batch = parse({"name": "batch", "rule": {"trait": "orders_count", "op": ">", "value": 0}})
    stream = parse({"name": "stream", "exclusions": ["batch"], "rule": RULE})
    assert [d.asset_key for d in assets.audience_spec(stream).deps] == [
        dg.AssetKey(["staging", "events"]), dg.AssetKey(["core", "identity_map"])]
    deps = {d.asset_key for d in assets.audience_spec(stream, {"batch": batch, "stream": stream}).deps}
    assert dg.AssetKey(["marts", "customer_profiles"]) in deps


def test_forget_erases_the_computed_traits_copied_beside_the_guard_state(tmp_path):
    """`customer_traits` lives in trigger_guard.sqlite: erasure and its residual check must cover it."""
    from datetime import datetime, timezone

    from personalization_assets.activation.erasure_match import Identifiers
    from personalization_assets.activation.erasure_stores import GuardStore
    from personalization_assets.audiences.traits_store import TraitStore

    path = tmp_path / "trigger_guard.sqlite"
    TraitStore(path).sync([("u1", {"views_7d": 3}), ("u2", {"views_7d": 1})], datetime.now(timezone.utc))
    store, person = GuardStore(path), Identifiers(user_ids={"u1"})
    assert store.remaining(person) == 1
    assert store.erase(person) >= 1
    assert store.remaining(person) == 0 and TraitStore(path).traits("u1") == ({}, None)
    assert TraitStore(path).traits("u2")[0] == {"views_7d": 1}  # nobody else's row goes
