"""The core assets on a real DuckDB file: golden, crosswalk, evidence, identity map, merge-rate check."""

import dagster as dg
import pandas as pd
from personalization_assets.resources.io_manager import AtomicDuckDBIOManager

from personalization_assets.assets.core import customers, identity_map, merge_rate_check
from personalization_assets.resources.warehouse import DuckDBWarehouse
from personalization_assets_tests.identity.identity_factory import person, population

STATE = {}


@dg.asset(key=["staging", "customers"])
def staged_customers() -> pd.DataFrame:
    return STATE["customers"]


@dg.asset(key=["staging", "events"])
def staged_events() -> pd.DataFrame:
    return STATE["events"]


def _events():
    return pd.DataFrame([
        {"message_id": "m1", "type": "page", "event": None, "user_id": None, "anonymous_id": "a1",
         "timestamp": pd.Timestamp("2026-01-01", tz="UTC")},
        {"message_id": "m2", "type": "identify", "event": None, "user_id": "1001", "anonymous_id": "a1",
         "timestamp": pd.Timestamp("2026-01-02", tz="UTC")},
    ])


def _run(tmp_path, config=None):
    db = str(tmp_path / "wh.duckdb")
    result = dg.materialize(
        [staged_customers, staged_events, customers, identity_map],
        resources={"io_manager": AtomicDuckDBIOManager(database=db), "warehouse": DuckDBWarehouse(database=db)},
        run_config={"ops": {"customers": {"config": config or {}}}} if config else None,
    )
    assert result.success
    return result, db


def _table(db, name):
    import duckdb

    with duckdb.connect(db, read_only=True) as con:
        return con.sql(f"select * from {name}").df()


def test_core_assets_materialize_with_metadata_and_stable_keys(tmp_path):
    base = population(50)
    dup = base.iloc[[1]].assign(record_id="shop:1", source="shop", email_key=None, email=None, phone=None)
    STATE.update(customers=pd.concat([base, dup], ignore_index=True), events=_events())
    result, db = _run(tmp_path)
    golden, cw, ev, idm = (_table(db, t) for t in ("core.customers", "core.customer_crosswalk",
                                                   "core.merge_evidence", "core.identity_map"))
    assert len(golden) == 50 and {"customer_key", "email", "first_name", "last_name", "country", "timezone",
                                  "email_opt_in", "consent_processing", "first_name_source"} <= set(golden.columns)
    keys = cw.set_index("record_id")["customer_key"]
    assert keys["shop:1"] == keys["crm:1001"]
    assert (ev["rule"] == "fuzzy").sum() == 1 and (ev["rule"] == "model").sum() == 1
    anon = idm[idm["identity_type"] == "anonymous_id"].set_index("identity")
    assert anon.loc["a1", "customer_key"] == keys["crm:1001"]
    mats = result.asset_materializations_for_node("customers")
    meta = {m.asset_key.path[-1]: m.metadata for m in mats}
    assert meta["customers"]["duplicates_merged"].value == 1
    assert meta["customers"]["dagster/row_count"].value == 50
    assert "1" in meta["customers"]["cluster_size_distribution"].data
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True]

    # second run: one new unrelated person arrives -> incremental, keys unchanged, check passes
    STATE["customers"] = pd.concat([STATE["customers"], population(1, seed=77).assign(record_id="crm:9999")],
                                   ignore_index=True)
    result2, db = _run(tmp_path)
    keys2 = _table(db, "core.customer_crosswalk").set_index("record_id")["customer_key"]
    assert (keys2.reindex(keys.index) == keys).all()
    meta2 = {m.asset_key.path[-1]: m.metadata for m in result2.asset_materializations_for_node("customers")}
    assert meta2["customers"]["resolution"].data["mode"] == "incremental"

    # unmerge through run config, kept by the next plain run
    _run(tmp_path, {"unmerge": [["shop:1"]]})
    _run(tmp_path)
    keys3 = _table(db, "core.customer_crosswalk").set_index("record_id")["customer_key"]
    assert keys3["shop:1"] != keys3["crm:1001"] and keys3["crm:1001"] == keys["crm:1001"]


def test_merge_rate_check_fails_on_a_jump():
    assert merge_rate_check(0.10, 0.12).passed
    bad = merge_rate_check(0.10, 0.40)
    assert not bad.passed and bad.metadata["merge_rate"].value == 0.40
    assert merge_rate_check(None, 0.9).passed  # first run has nothing to compare with
