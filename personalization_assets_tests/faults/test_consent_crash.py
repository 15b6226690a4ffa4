"""The crash-injection harness of issue 17 on consent: opt-outs stored as text reach staging, and a
run killed (`kill -9`) at any commit of the CRM load or its staging never leaves anyone consenting
who opted out, once the next run has completed (0 consent inversions, 0 rows lost, no slot taken).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from . import child as runs
from .deadline import finish
from .harness import Child, slots_taken

NOW = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)  # the CRM keeps naive UTC
OPT_OUTS = {1: "no", 2: "false", 3: "N", 4: "0", 5: "Off", 6: " FALSE "}  # text, as legacy CRMs store them
KILL_POINTS = {  # the commits of the run, in order (`warehouse.WarehouseConnection.transaction`)
    "in the raw load's transaction": "before_commit@1",
    "raw committed, staging's first transaction not": "before_commit@2",
    "in staging's chunk": "before_commit@3",
    "staged rows committed, their quarantine merge not": "before_commit@4",
}


def _crm(path) -> str:
    """A legacy CRM table (consent as text, no key constraint) with 20 customers who opted in."""
    with sqlite3.connect(path) as conn:
        conn.execute("create table customers (customer_id bigint, first_name text, last_name text, email text, "
                     "phone text, street text, city text, postcode text, country text, birth_date text, "
                     "timezone text, locale text, email_opt_in text, consent_processing text, created_at text, "
                     "updated_at text)")
        stamp = str(NOW - timedelta(days=2))
        conn.executemany("insert into customers (customer_id, first_name, last_name, email, email_opt_in, "
                         "consent_processing, created_at, updated_at) values (?, ?, 'Lee', ?, 'true', 'yes', ?, ?)",
                         [(i, f"Ann{i}", f"u{i}@example.org", stamp, stamp) for i in range(1, 21)])
    return f"sqlite:///{path}"


def _opt_out(path) -> None:
    with sqlite3.connect(path) as conn:
        for i, text in OPT_OUTS.items():
            conn.execute("update customers set email_opt_in = ?, updated_at = ? where customer_id = ?",
                         [text, str(NOW - timedelta(minutes=2)), i])


def _consent(database: str) -> dict[int, bool]:
    with duckdb.connect(database, read_only=True) as conn:
        rows = conn.execute("select record_id, email_opt_in from staging.customers").fetchall()
    return {int(r.removeprefix("crm:")): v for r, v in rows}


@pytest.mark.parametrize("point", KILL_POINTS.values(), ids=KILL_POINTS.keys())
def test_a_crash_never_turns_an_opt_out_into_consent(point, env, instance, tmp_path, monkeypatch):
    database = env["PERSONALIZATION_DUCKDB_PATH"]
    crm_file = tmp_path / "crm.sqlite"
    monkeypatch.setenv("CRM_DATABASE_URL", _crm(crm_file))
    env = {**env, "CRM_DATABASE_URL": f"sqlite:///{crm_file}"}
    assert runs.run("crm", instance=instance, database=database).success
    assert _consent(database) == dict.fromkeys(range(1, 21), True)

    _opt_out(crm_file)
    child = Child("crm", env, fault=point)
    child.wait_for(f"FAULT {point}")
    child.kill()
    killed = _consent(database)
    assert set(killed) == set(range(1, 21))  # nothing lost or half-written
    assert not [i for i in range(7, 21) if not killed[i]]  # nobody who kept consenting lost it

    assert finish(lambda: runs.run("crm", instance=instance), instance, "the run after the crash").success
    assert slots_taken(instance) == []
    after = _consent(database)
    inverted = [i for i in OPT_OUTS if after[i] is not False]
    assert inverted == [], f"{len(inverted)} consent inversion(s): opted out in the CRM, consenting in staging"
    assert after == {i: i not in OPT_OUTS for i in range(1, 21)}
