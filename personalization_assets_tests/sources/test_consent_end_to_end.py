"""Finding: an opt-out stored as text ('no') kept the person in `high_value` and sendable, because
SQLAlchemy's SQLite Boolean read any non-empty text as True. Through the whole graph: the person
leaves every sendable segment and the guard store says not sendable."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import dagster as dg
import duckdb
import pytest

from personalization_assets import clock, settings
from personalization_assets.definitions import defs
from personalization_assets.demo.run import _arrival_days, run_demo


@pytest.fixture
def demo_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "local")
    for var in ("CRM_DATABASE_URL", "EVENT_BUS_URL", "ORDERS_API_URL", "PERSONALIZATION_DUCKDB_PATH",
                "PERSONALIZATION_NOW"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _high_value_crm_members(db) -> dict[str, int]:
    """customer_key -> its one CRM customer_id, for high_value members made of a single CRM record."""
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "select m.customer_key, min(x.record_id) from marts.segment_membership m "
            "join core.customer_crosswalk x using (customer_key) where m.segment = 'high_value' "
            "group by 1 having count(*) = 1 and min(x.record_id) like 'crm:%' order by 1").fetchall()
    return {key: int(record.removeprefix("crm:")) for key, record in rows}


def test_a_text_opt_out_leaves_every_sendable_segment(demo_env):
    instance = dg.DagsterInstance.ephemeral()
    first = run_demo(seed=11, scale=0.1, instance=instance)
    assert first.success, first.errors
    db = settings.warehouse_path()
    members = _high_value_crm_members(db)
    assert members, "the demo has high_value members to opt out"
    key, customer_id = next(iter(members.items()))

    # The CRM stores the opt-out as text, as many CRMs and imports do.
    crm_file = settings.crm_url().removeprefix("sqlite:///")
    stamp = (first.now - timedelta(minutes=1)).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(crm_file) as crm:
        crm.execute("update customers set email_opt_in = 'no', updated_at = ? where customer_id = ?",
                    [stamp, customer_id])

    job = defs().resolve_job_def("everything")
    with clock.pinned(first.now):
        again = job.execute_in_process(instance=instance, tags=_arrival_days(first.now), raise_on_error=False)
    assert again.success, [e.step_failure_data.error.message for e in again.all_events if e.is_step_failure]
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("select email_opt_in from core.customers where customer_key = ?",
                            [key]).fetchone() == (False,)
        assert conn.execute("select segment from marts.segment_membership where customer_key = ? "
                            "and segment in ('high_value', 'at_risk', 'win_back')", [key]).fetchall() == []
        assert conn.execute("select email_opt_in from raw.crm_customers where customer_id = ?",
                            [customer_id]).fetchone() == ("no",)  # raw keeps what the CRM holds
