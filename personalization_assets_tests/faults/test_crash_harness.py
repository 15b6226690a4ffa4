"""The crash-injection harness of issue 17 (findings 1 and 5) on the core identity assets.

A real child process runs golden records, crosswalk, merge evidence and identity map (on the memory
path, and on the warehouse path whose commit renames staged tables), and is
killed (`kill -9`) at a chosen point. Then: nothing committed before is lost or torn, the next run
completes, no slot stays taken, the tables equal a clean run's, and a manual unmerge survives.
"""

import duckdb
import dagster as dg
import pandas as pd
import pytest

from personalization_assets.resources.io_manager import COMMITS, TableStateError, commit_tables, verify_tables
from personalization_assets.resources.warehouse import DuckDBWarehouse
from personalization_assets.warehouse import WarehouseConnection
from personalization_assets_tests.identity.identity_factory import population

from . import child as runs
from .deadline import finish
from .harness import Child, slots_taken

TABLES = ["core.customers", "core.customer_crosswalk", "core.merge_evidence", "core.identity_map"]
UNMERGE = {"unmerge": [["shop:1"]]}  # shop:1 is the same person as crm:1001 until split by hand
KILL_POINTS = {
    "step start, slot held": "before_load@staging.customers",
    "golden records handed over, crosswalk and evidence not yet": "output_held@core.customers",
    "inside the commit, crosswalk replaced, evidence not yet": "before_replace@core.merge_evidence",
    "right after the evidence table's delete": "after_delete@core.merge_evidence",
}


def _stage(database: str, newcomer: bool, joiner: bool = False, pairs: int = 1) -> None:
    """40 people, one of them also a shop record (`pairs` = 2: two of them); with `newcomer`, one
    more person arrives; with `joiner`, a third record of the first (a web sign-up) joins them."""
    people = population(40)
    frames = [people, people.iloc[[1]].assign(record_id="shop:1", source="shop", email_key=None, email=None,
                                              phone=None)]
    if pairs == 2:
        frames.append(people.iloc[[2]].assign(record_id="shop:2", source="shop", phone=None))
    if newcomer:
        frames.append(population(1, seed=77).assign(record_id="crm:9999"))
    if joiner:
        frames.append(people.iloc[[1]].assign(record_id="web:1", source="web", phone=None))
    events = pd.DataFrame([
        {"message_id": "m1", "type": "page", "event": None, "user_id": None, "anonymous_id": "a1",
         "timestamp": pd.Timestamp("2026-01-01", tz="UTC")},
        {"message_id": "m2", "type": "identify", "event": None, "user_id": "1001", "anonymous_id": "a1",
         "timestamp": pd.Timestamp("2026-01-02", tz="UTC")},
    ])
    with DuckDBWarehouse(database=database).connect() as conn:
        conn.prepare_table("staging", "customers", frames[0])
        conn.prepare_table("staging", "events", events)
        with conn.transaction():
            conn.replace_frame("staging", "customers", pd.concat(frames, ignore_index=True))
            conn.replace_frame("staging", "events", events)


def _tables(database: str) -> dict[str, pd.DataFrame]:
    with duckdb.connect(database, read_only=True) as conn:
        return {t: conn.sql(f"select * from {t}").df().astype(str).sort_values(["customer_key"] + (
            ["identity"] if t == "core.identity_map" else []) if t != "core.merge_evidence" else
            ["left_record_id", "right_record_id", "rule"]).reset_index(drop=True) for t in TABLES}


def _assert_same(actual: dict, expected: dict) -> None:
    for table in TABLES:
        pd.testing.assert_frame_equal(actual[table], expected[table], obj=table)


def _split_by_hand(tables: dict) -> bool:
    keys = tables["core.customer_crosswalk"].set_index("record_id")["customer_key"]
    return keys["shop:1"] != keys["crm:1001"]


def _run(database: str, instance: dg.DagsterInstance, config: dict | None = None) -> None:
    assert runs.run("identity", config, instance=instance, database=database).success


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """The tables after the same history with no crash: a run with an unmerge, then a newcomer's run."""
    database = str(tmp_path_factory.mktemp("clean") / "warehouse.duckdb")
    with dg.DagsterInstance.ephemeral() as instance:
        _stage(database, newcomer=False)
        _run(database, instance, UNMERGE)
        _stage(database, newcomer=True)
        _run(database, instance)
    return _tables(database)


@pytest.mark.parametrize("point", KILL_POINTS.values(), ids=KILL_POINTS.keys())
def test_a_run_killed_anywhere_loses_nothing_and_the_next_run_equals_a_clean_one(point, env, instance, clean_run):
    database = env["PERSONALIZATION_DUCKDB_PATH"]
    _stage(database, newcomer=False)
    _run(database, instance, UNMERGE)
    before = _tables(database)
    assert _split_by_hand(before)
    _stage(database, newcomer=True)

    child = Child("identity", env, fault=point)
    child.wait_for(f"FAULT {point}")
    child.kill()
    (dead, _), = slots_taken(instance)
    _assert_same(_tables(database), before)  # nothing half-written, nothing wiped
    with DuckDBWarehouse(database=database).connect() as conn:
        verify_tables(conn, TABLES)

    assert finish(lambda: runs.run("identity", instance=instance), instance,
                  f"the run after the crash (dead run {dead[:8]})").success
    assert slots_taken(instance) == []
    after = _tables(database)
    _assert_same(after, clean_run)
    assert _split_by_hand(after), "the manual unmerge was lost: the record was merged again"


def test_a_rerun_keeps_the_match_probability_of_every_carried_record(tmp_path):
    """Finding 7 of issue 17: an incremental rerun through the warehouse blanked match_probability
    of the records it carried over (400 rows on the demo)."""
    database = str(tmp_path / "warehouse.duckdb")
    with dg.DagsterInstance.ephemeral() as instance:
        _stage(database, newcomer=False, pairs=2)  # two customers of two records each
        _run(database, instance)
        first = _tables(database)["core.customer_crosswalk"].set_index("record_id")
        _stage(database, newcomer=True, joiner=True, pairs=2)  # a new customer, one grown, the rest untouched
        _run(database, instance)
    again = _tables(database)["core.customer_crosswalk"].set_index("record_id")
    carried = ~again["previous_customer_key"].isin(["<NA>", "None", "nan"])
    assert sorted(carried[carried].index) == sorted(first.index)  # incremental: every earlier record carried
    assert again.loc["web:1", "customer_key"] == again.loc["shop:1", "customer_key"] == first.loc["shop:1", "customer_key"]
    scored = first["match_probability"] != "nan"
    assert scored["shop:1"] and scored["shop:2"]
    grown = again["customer_key"] == again.loc["web:1", "customer_key"]
    untouched = first.index.difference(grown[grown].index)
    assert "shop:2" in untouched
    pd.testing.assert_series_equal(again.loc[untouched, "match_probability"], first.loc[untouched, "match_probability"])
    assert (again.loc[grown, "match_probability"] != "nan").all()  # the grown cluster scored again, never blanked


def test_identity_map_refuses_a_crosswalk_that_no_successful_write_left(env, instance):
    """The old IO manager's committed DELETE, then a crash: 0 rows. The next run must not take it as truth."""
    database = env["PERSONALIZATION_DUCKDB_PATH"]
    _stage(database, newcomer=False)
    _run(database, instance)
    with duckdb.connect(database) as conn:
        conn.execute("delete from core.customer_crosswalk")
    result = runs.run("identity_map", instance=instance, database=database)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert "core.customer_crosswalk holds 0 rows, but its last committed write" in str(failure.cause or failure)
    assert not result.get_asset_materialization_events()


def test_verify_tables_refuses_torn_and_unrecorded_empty_tables(duck: WarehouseConnection):
    with pytest.raises(TableStateError, match="does not exist yet"):
        verify_tables(duck, ["core.customer_crosswalk"])
    commit_tables(duck, {"core.customer_crosswalk": pd.DataFrame({"record_id": ["a", "b"]}),
                         "core.merge_evidence": pd.DataFrame({"rule": pd.Series([], dtype=str)})}, run_id="r1")
    verify_tables(duck, ["core.customer_crosswalk", "core.merge_evidence"])  # an empty table a commit wrote is fine
    assert duck.scalar(f"select count(*) from {'.'.join(COMMITS)} where run_id = 'r1'") == 2
    duck.execute("delete from core.customer_crosswalk where record_id = 'a'")  # erasure of one person
    verify_tables(duck, ["core.customer_crosswalk"])
    duck.execute("delete from core.customer_crosswalk")
    with pytest.raises(TableStateError, match="holds 0 rows, but its last committed write \\(run r1\\) left 2"):
        verify_tables(duck, ["core.customer_crosswalk"])
    duck.execute("create table core.customers (customer_key varchar)")
    with pytest.raises(TableStateError, match="empty and no completed write recorded it"):
        verify_tables(duck, ["core.customers"])
    verify_tables(duck, ["core.customers"], strict=False)  # written by the warehouse resource: no record


def test_unmerges_are_never_dropped_because_the_crosswalk_is_missing():
    from personalization_assets.identity.state import ResolvedState

    evidence = pd.DataFrame({"left_record_id": ["shop:1"], "right_record_id": ["crm:1001"], "rule": ["cannot_link"]})
    with pytest.raises(ValueError, match="holds 1 unmerge"):
        ResolvedState.from_tables(pd.DataFrame(columns=["record_id", "record_hash"]), evidence)
    assert ResolvedState.from_tables(pd.DataFrame(columns=["record_id"]), evidence.iloc[:0]) is None  # first run


WAREHOUSE_KILL_POINTS = {
    "staged tables written, golden records renamed into place, crosswalk not yet":
        "before_replace@core.customer_crosswalk",
    "right after the evidence table's drop, before its staged table is renamed": "after_delete@core.merge_evidence",
}


@pytest.mark.parametrize("point", WAREHOUSE_KILL_POINTS.values(), ids=WAREHOUSE_KILL_POINTS.keys())
def test_a_warehouse_path_run_killed_in_its_commit_loses_nothing(point, env, instance, tmp_path, monkeypatch):
    """The warehouse path commits staged tables by renaming them: killed inside that transaction,
    the previous tables stand, and the next run equals a clean run of the same history."""
    from personalization_assets.identity.warehouse import PATH_SETTING

    monkeypatch.setenv(PATH_SETTING, "warehouse")
    database = env["PERSONALIZATION_DUCKDB_PATH"]
    _stage(database, newcomer=False)
    _run(database, instance)
    before = _tables(database)
    _stage(database, newcomer=True)

    child = Child("identity", {**env, PATH_SETTING: "warehouse"}, fault=point)
    child.wait_for(f"FAULT {point}")
    child.kill()
    _assert_same(_tables(database), before)
    with DuckDBWarehouse(database=database).connect() as conn:
        verify_tables(conn, TABLES)
    assert finish(lambda: runs.run("identity", instance=instance), instance, "the run after the crash").success
    assert slots_taken(instance) == []

    clean = str(tmp_path / "clean" / "warehouse.duckdb")
    (tmp_path / "clean").mkdir()
    with dg.DagsterInstance.ephemeral() as other:
        for newcomer in (False, True):
            _stage(clean, newcomer=newcomer)
            _run(clean, other)
    _assert_same(_tables(database), _tables(clean))
    with duckdb.connect(database, read_only=True) as conn:
        assert conn.execute("select count(*) from duckdb_tables() where table_name like '\\_staged%' escape '\\'"
                            ).fetchall() == [(0,)]
