"""Prod (Snowflake, on fakesnow): the identity tables commit together or not at all (issue 17, finding 5)."""

import contextlib
import os
from datetime import datetime

import dagster as dg
import pandas as pd
import pytest

from personalization_assets_tests.conftest import require_module

require_module("fakesnow")

from personalization_assets.assets import core, raw, staging  # noqa: E402
from personalization_assets.assets.core import IDENTITY_TABLES  # noqa: E402
from personalization_assets.resources import resources_for, snowflake_credentials  # noqa: E402
from personalization_assets.sources.crm import write_customers  # noqa: E402
from personalization_assets_tests.spine.test_prod_fakesnow import ROWS  # noqa: E402

SELECTION = [raw.crm_customers, staging.customers, core.customers]
NEW_ROW = {**ROWS[2], "customer_id": 5, "first_name": "Cy", "email": "cy@example.org",
           "created_at": datetime(2026, 1, 5), "updated_at": datetime(2026, 2, 5)}


@contextlib.contextmanager
def _warehouse(resources):
    with dg.build_resources({"warehouse": resources["warehouse"]}) as built:
        with built.warehouse.connect() as conn:
            yield conn


def _snapshot(resources) -> dict[str, pd.DataFrame]:
    """Each identity table's rows (order-free) and column types, and the commit records."""
    out = {}
    with _warehouse(resources) as conn:
        for name in IDENTITY_TABLES:
            schema, table = name.split(".")
            frame = conn.query(f"select * from {name}")
            out[name] = frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)
            out[f"{name} types"] = conn.query(
                "select column_name, data_type from information_schema.columns where lower(table_schema) = ? "
                "and lower(table_name) = ? order by ordinal_position", [schema, table])
        if conn.table_exists("ops", "table_commits"):
            out["commits"] = conn.query("select table_name, run_id, row_count from ops.table_commits "
                                        "order by table_name")
        out["stages"] = conn.query("select table_name from information_schema.tables "
                                   "where left(lower(table_name), 8) = '__stage_'")  # snowflake_io.STAGE_PREFIX
    return out


def _assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        pd.testing.assert_frame_equal(before[key], after[key], obj=key)


def test_a_normal_run_writes_the_tables_todays_io_manager_wrote_and_records_one_commit(snowflake_env):
    from dagster_snowflake_pandas import SnowflakePandasIOManager

    write_customers(os.environ["CRM_DATABASE_URL"], ROWS)
    resources = resources_for("prod")
    plain = {**resources, "io_manager": SnowflakePandasIOManager(**snowflake_credentials())}
    for _ in range(2):  # the second run is incremental (previous keys set), as the next one will be
        assert dg.materialize(SELECTION, resources=plain).success
    today = _snapshot(plain)

    result = dg.materialize(SELECTION, resources=resources)
    assert result.success
    now = _snapshot(resources)
    commits = now.pop("commits")
    assert "commits" not in today
    _assert_same(today, now)  # same rows, same column types
    assert commits["table_name"].tolist() == sorted(IDENTITY_TABLES)
    assert set(commits["run_id"]) == {result.run_id}
    assert commits["row_count"].astype(int).tolist() == [len(now[t]) for t in sorted(IDENTITY_TABLES)]
    assert now["stages"].empty


@contextlib.contextmanager
def _failing_load(table: str):
    """Any `write_pandas` load whose table name contains `table` fails (the connector's, which the
    staging path uses, and the one Dagster's type handler imported)."""
    import snowflake.connector.pandas_tools as connector_tools
    from dagster_snowflake_pandas import snowflake_pandas_type_handler as handler

    originals = {module: module.write_pandas for module in (connector_tools, handler)}

    def wrap(original):
        def write_pandas(conn, df, table_name, *args, **kwargs):
            if table.upper() in table_name.upper():
                raise ConnectionError(f"injected: the load of {table_name} failed")
            return original(conn, df, table_name, *args, **kwargs)
        return write_pandas

    for module, original in originals.items():
        module.write_pandas = wrap(original)
    try:
        yield
    finally:
        for module, original in originals.items():
            module.write_pandas = original


def _run_changed_data(resources, **kwargs):
    write_customers(os.environ["CRM_DATABASE_URL"], [NEW_ROW])
    return dg.materialize(SELECTION, resources=resources, raise_on_error=False, **kwargs)


def test_a_failed_load_of_the_second_table_leaves_all_three_unchanged(snowflake_env):
    write_customers(os.environ["CRM_DATABASE_URL"], ROWS)
    resources = resources_for("prod")
    assert dg.materialize(SELECTION, resources=resources).success
    before = _snapshot(resources)

    with _failing_load("customer_crosswalk"):
        failed = _run_changed_data(resources)
    assert not failed.success
    _assert_same(before, _snapshot(resources))  # core.customers was not replaced alone

    assert dg.materialize(SELECTION, resources=resources).success
    after = _snapshot(resources)
    assert "cy@example.org" in after["core.customers"]["email"].tolist()
    assert len(after["core.customer_crosswalk"]) == len(before["core.customer_crosswalk"]) + 1


@pytest.mark.parametrize("point", ["after_delete@core.customer_crosswalk", "before_commit"])
def test_a_failure_inside_the_commit_rolls_every_table_back(snowflake_env, monkeypatch, point):
    from personalization_assets.resources import snowflake_io

    def fail_at(name, where=""):
        if point in (name, f"{name}@{where}"):
            raise ConnectionError(f"injected: connection lost at {name}@{where}")

    write_customers(os.environ["CRM_DATABASE_URL"], ROWS)
    resources = resources_for("prod")
    assert dg.materialize(SELECTION, resources=resources).success
    before = _snapshot(resources)

    monkeypatch.setattr(snowflake_io, "fault_point", fail_at)
    failed = _run_changed_data(resources)
    assert not failed.success
    assert "injected: connection lost" in str(failed.all_events)
    _assert_same(before, _snapshot(resources))  # rows, commit records, and no stage table left


def test_a_downstream_read_refuses_an_emptied_identity_table(snowflake_env):
    write_customers(os.environ["CRM_DATABASE_URL"], ROWS)
    resources = resources_for("prod")
    assert dg.materialize(SELECTION, resources=resources).success
    with _warehouse(resources) as conn:
        conn.execute("delete from core.customer_crosswalk")  # emptied outside a run

    @dg.asset(key=["marts", "probe"], ins={"crosswalk": dg.AssetIn(key=["core", "customer_crosswalk"])})
    def probe(crosswalk):
        return pd.DataFrame({"rows": [len(crosswalk)]})

    result = dg.materialize([probe, *SELECTION], resources=resources, selection=[probe], raise_on_error=False)
    assert not result.success
    assert "holds 0 rows, but its last committed write" in str(result.all_events)


def test_stage_tables_left_by_a_killed_run_are_dropped_by_the_next(snowflake_env):
    write_customers(os.environ["CRM_DATABASE_URL"], ROWS)
    resources = resources_for("prod")
    with _warehouse(resources) as conn:
        conn.ensure_schema("core")
        conn.execute("create table core.__stage_customer_crosswalk_deadrun1 (record_id varchar)")
    assert dg.materialize(SELECTION, resources=resources).success
    assert _snapshot(resources)["stages"].empty


# One prod run in its own process, on a fakesnow warehouse kept in files (argv[1]); prints the
# identity tables' row counts as `ROWS {...}` at the end. PERSONALIZATION_FAULT stops it where asked.
CHILD = """
import json, sys
import dagster as dg, fakesnow
from dagster_snowflake.snowflake_io_manager import SnowflakeDbClient
from personalization_assets.assets import core, raw, staging
from personalization_assets.resources import resources_for
from personalization_assets_tests.fakesnow_support import merge_in_transactions

original = SnowflakeDbClient.delete_table_slice
def delete_ignoring_missing(context, table_slice, connection):  # as in spine/conftest.py
    try:
        original(context, table_slice, connection)
    except Exception as exc:
        if "does not exist" not in str(exc):
            raise
SnowflakeDbClient.delete_table_slice = staticmethod(delete_ignoring_missing)
with merge_in_transactions(), fakesnow.patch(
        extra_targets=["dagster_snowflake_pandas.snowflake_pandas_type_handler.write_pandas"], db_path=sys.argv[1]):
    resources = resources_for("prod")
    if sys.argv[2] == "run":
        dg.materialize([raw.crm_customers, staging.customers, core.customers], resources=resources)
    with dg.build_resources({"warehouse": resources["warehouse"]}) as built, built.warehouse.connect() as conn:
        counts = {t: int(conn.scalar(f"select count(*) from {t}")) for t in core.IDENTITY_TABLES}
    print("ROWS " + json.dumps(counts), flush=True)
"""


def _child(db: str, mode: str, fault: str | None = None):
    import subprocess
    import sys

    from personalization_assets.resources.faults import FAULT_ENV

    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.Popen([sys.executable, "-c", CHILD, db, mode], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _rows(proc) -> dict:
    import json

    out, err = proc.communicate(timeout=120)
    line = [x for x in out.splitlines() if x.startswith("ROWS ")]
    assert proc.returncode == 0 and line, err[-3000:]
    return json.loads(line[-1][5:])


def test_a_run_killed_after_the_crosswalk_delete_leaves_all_three_tables_as_committed(prod_env, tmp_path):
    import signal

    db = str(tmp_path / "fakesnow")
    os.mkdir(db)
    write_customers(os.environ["CRM_DATABASE_URL"], ROWS)
    committed = _rows(_child(db, "run"))
    assert committed["core.customer_crosswalk"] == 3

    write_customers(os.environ["CRM_DATABASE_URL"], [NEW_ROW])
    proc = _child(db, "run", fault="after_delete@core.customer_crosswalk")
    for line in proc.stderr:  # the child stops (sleeps) at the fault point, inside the open transaction
        if line.startswith("FAULT after_delete@core.customer_crosswalk"):
            break
    else:
        raise AssertionError(f"the child never reached the fault point (exit {proc.wait(timeout=60)})")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)

    assert _rows(_child(db, "read")) == committed  # neither emptied nor half-replaced
    after = _rows(_child(db, "run"))
    assert after["core.customer_crosswalk"] == 4 and after["core.customers"] == committed["core.customers"] + 1
