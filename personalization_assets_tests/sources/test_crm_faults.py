"""A CRM with bad rows, on a SQLite file and on the PostgreSQL server: the bad rows go to quarantine
with their reason, the good ones load, text opt-outs are never consent, a future `updated_at`
never freezes the cursor, and late commits inside the look-back window still load.

The CRM table here is "legacy" shaped, as real CRMs often are: a nullable key without a primary
key constraint, consent and dates as text.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa

from personalization_assets.assets import raw, staging
from personalization_assets.resources import resources_for
from personalization_assets.resources.sources import CrmDatabase
from personalization_assets.sources.incremental import WINDOW

NOW = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)  # the CRM keeps naive UTC
PAST = NOW - timedelta(days=3)


def _legacy_table(metadata: sa.MetaData, *, text_stamps: bool) -> sa.Table:
    stamp = sa.String if text_stamps else sa.DateTime
    return sa.Table(
        "customers", metadata,
        sa.Column("customer_id", sa.BigInteger, nullable=True),
        *(sa.Column(c, sa.String) for c in ("first_name", "last_name", "email", "phone", "street", "city",
                                            "postcode", "country", "birth_date", "timezone", "locale",
                                            "email_opt_in", "consent_processing", "created_at")),
        sa.Column("updated_at", stamp),
    )


def _row(i, updated_at=PAST, **values):
    return {"customer_id": i, "first_name": f"ann{i}", "last_name": "lee", "email": f"u{i}@example.org",
            "phone": None, "street": None, "city": None, "postcode": None, "country": None, "birth_date": None,
            "timezone": None, "locale": None, "email_opt_in": "true", "consent_processing": "true",
            "created_at": str(PAST), "updated_at": updated_at, **values}


def _good_and_bad() -> list[dict]:
    return [
        _row(1), _row(2, email_opt_in="false"), _row(3, email_opt_in=" No "), _row(4, email_opt_in="0"),
        _row(5, email_opt_in="maybe"),  # unknown: never consent, quarantined
        _row(6, created_at="31/02/2026"),  # a date that is not one
        _row(7, updated_at=NOW + timedelta(days=365 * 4)),  # from the future: 4 years ahead
        _row(8, birth_date="1990-02-30"), _row(9, first_name="\u202eevil"),
        _row(None, email="nokey@example.org", updated_at=PAST + timedelta(minutes=1)),  # the page's last row
    ]


def _materialize(url: str):
    resources = {**resources_for("local"), "crm": CrmDatabase(url=url)}
    return dg.materialize([raw.crm_customers, staging.customers], resources=resources, raise_on_error=False)


def _query(db, sql):
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _check(url: str, engine: sa.Engine, table: sa.Table, db) -> None:
    result = _materialize(url)
    assert result.success, [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]

    staged = dict(_query(db, "select record_id, email_opt_in from staging.customers"))
    assert staged["crm:1"] is True
    assert staged["crm:2"] is False and staged["crm:3"] is False and staged["crm:4"] is False  # opt-outs as text
    assert "crm:5" not in staged and "crm:6" not in staged and "crm:7" not in staged
    assert not [r for r in staged if r in ("crm:<NA>", "crm:None", "crm:nan") or r.endswith(".0")]
    assert set(staged) == {"crm:1", "crm:2", "crm:3", "crm:4", "crm:8", "crm:9"}

    rules = dict(_query(db, "select rule, count(*) from quarantine.crm_customers where status = 'open' group by 1"))
    assert rules == {"customers.email_opt_in": 1, "raw.created_at_invalid": 1, "raw.updated_at_future": 1,
                     "raw.key_missing": 1}
    messages = dict(_query(db, "select rule, message from quarantine.crm_customers"))
    assert "'maybe'" in messages["customers.email_opt_in"]
    assert "31/02/2026" in messages["raw.created_at_invalid"]

    # Bad birth dates are flagged, not silently blanked; a bidi override never reaches the name.
    birth = _query(db, "select birth_date, birth_date_raw, birth_date_issue from staging.customers "
                       "where record_id = 'crm:8'")[0]
    assert birth[0] is None and birth[1] == "1990-02-30" and birth[2]
    name = _query(db, "select first_name, first_name_raw from staging.customers where record_id = 'crm:9'")[0]
    assert name == ("Evil", "\u202eevil")

    # The future row did not move the cursor past now - safety lag.
    cursor = json.loads(_query(db, "select cursor_json from ops.cursors where name = 'crm_customers'")[0][0])
    assert datetime.fromisoformat(cursor["updated_at"]) <= datetime.now(timezone.utc) - WINDOW.safety_lag

    # Later real changes load: one stamped now, and one committed late with an updated_at before
    # the cursor (inside the look-back window). A rerun duplicates nothing.
    with engine.begin() as conn:
        conn.execute(table.insert(), [_row(20, updated_at=NOW - timedelta(minutes=10)),
                                      _row(21, updated_at=PAST - timedelta(minutes=30))])
    quarantine_rows = _query(db, "select count(*) from quarantine.crm_customers")[0][0]
    for _ in range(2):
        assert _materialize(url).success
        assert {"crm:20", "crm:21"} <= {r for (r,) in _query(db, "select record_id from staging.customers")}
        assert _query(db, "select count(*), count(distinct customer_id) from raw.crm_customers")[0] == (9, 9)
        assert _query(db, "select count(*) from quarantine.crm_customers")[0][0] == quarantine_rows


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def crm(request, tmp_path):
    """(url, engine, legacy customers table) on a SQLite file or in a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        url, cleanup = f"sqlite:///{tmp_path / 'crm.sqlite'}", None
    else:
        admin = sa.create_engine(request.getfixturevalue("postgres_url"))
        schema = f"crm_faults_{datetime.now().strftime('%H%M%S%f')}"
        with admin.begin() as conn:
            conn.execute(sa.text(f"create schema {schema}"))
        url = f"{admin.url.render_as_string(hide_password=False)}?options=-csearch_path%3D{schema}"

        def cleanup():
            with admin.begin() as conn:
                conn.execute(sa.text(f"drop schema {schema} cascade"))
            admin.dispose()
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    table = _legacy_table(metadata, text_stamps=False)
    metadata.create_all(engine)
    yield url, engine, table
    engine.dispose()
    if cleanup:
        cleanup()


def _insert(crm, rows):
    _, engine, table = crm
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)


def test_every_fault_at_once(local_env, crm):
    _insert(crm, _good_and_bad())
    _check(crm[0], crm[1], crm[2], local_env / "warehouse.duckdb")


def test_text_opt_outs_are_never_consent(local_env, crm):
    _insert(crm, [_row(1), _row(2, email_opt_in="false"), _row(3, email_opt_in="no"), _row(4, email_opt_in="N"),
                  _row(5, email_opt_in="off", consent_processing="FALSE")])
    assert _materialize(crm[0]).success
    staged = dict(_query(local_env / "warehouse.duckdb", "select record_id, email_opt_in and consent_processing "
                                                          "from staging.customers"))
    assert staged == {"crm:1": True, "crm:2": False, "crm:3": False, "crm:4": False, "crm:5": False}


def test_a_future_row_does_not_freeze_the_cursor(local_env, crm):
    _insert(crm, [_row(1), _row(2, updated_at=datetime(2030, 1, 1))])
    assert _materialize(crm[0]).success
    _insert(crm, [_row(3, updated_at=NOW - timedelta(minutes=20))])  # a real change, after the 2030 row was seen
    assert _materialize(crm[0]).success
    db = local_env / "warehouse.duckdb"
    assert {r for (r,) in _query(db, "select record_id from staging.customers")} == {"crm:1", "crm:3"}
    assert _query(db, "select record_id, rule from quarantine.crm_customers") == [("crm:2", "raw.updated_at_future")]

    # The CRM corrects the row: it loads, and its quarantine row is released by the raw layer.
    _, engine, table = crm
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.customer_id == 2).values(updated_at=NOW - timedelta(minutes=15)))
    assert _materialize(crm[0]).success
    assert {r for (r,) in _query(db, "select record_id from staging.customers")} == {"crm:1", "crm:2", "crm:3"}
    assert _query(db, "select record_id, status from quarantine.crm_customers") == [("crm:2", "released")]


def test_a_keyless_last_row_blocks_nothing_and_is_never_a_customer(local_env, crm):
    _insert(crm, [_row(1), _row(2), _row(None, updated_at=PAST + timedelta(minutes=1)),
                  _row(None, email="other@example.org", updated_at=PAST + timedelta(minutes=1))])
    assert _materialize(crm[0]).success
    db = local_env / "warehouse.duckdb"
    assert {r for (r,) in _query(db, "select record_id from staging.customers")} == {"crm:1", "crm:2"}
    keyless = _query(db, "select record_id, rule from quarantine.crm_customers")
    assert len(keyless) == 2 and {rule for _, rule in keyless} == {"raw.key_missing"}  # two records, two rows


def test_a_bad_date_blocks_nothing(local_env, crm):
    _insert(crm, [_row(1), _row(2, created_at="31/02/2026"), _row(3, created_at="not a date")])
    assert _materialize(crm[0]).success
    db = local_env / "warehouse.duckdb"
    assert [r for (r,) in _query(db, "select record_id from staging.customers")] == ["crm:1"]
    assert dict(_query(db, "select record_id, rule from quarantine.crm_customers")) == {
        "crm:2": "raw.created_at_invalid", "crm:3": "raw.created_at_invalid"}


def test_non_utf8_name_is_quarantined_and_the_rest_loads_sqlite(local_env, tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    table = _legacy_table(metadata, text_stamps=True)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [_row(i, updated_at=str(PAST)) for i in (1, 2, 3)])
        conn.execute(sa.text("update customers set first_name = cast(x'4a6f73e9' as text) where customer_id = 2"))
        conn.execute(sa.text("update customers set updated_at = 'yesterday-ish' where customer_id = 3"))
    engine.dispose()
    result = _materialize(url)
    assert result.success, [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    db = local_env / "warehouse.duckdb"
    assert [r for (r,) in _query(db, "select record_id from staging.customers")] == ["crm:1"]
    quarantined = {r: (rule, payload) for r, rule, payload in _query(
        db, "select record_id, rule, raw_payload from quarantine.crm_customers")}
    assert quarantined["crm:2"][0] == "raw.text_encoding"
    assert json.loads(quarantined["crm:2"][1])["first_name"] == "Jos\\xe9"  # the bytes, shown escaped
    assert quarantined["crm:3"][0] == "raw.updated_at_invalid"


def test_a_warehouse_from_before_is_migrated(local_env, tmp_path):
    """Raw consent columns were booleans and staging had no `birth_date_issue`: both are migrated."""
    import pandas as pd

    from personalization_assets.sources.crm import write_customers
    from personalization_assets.staging import stage_customers
    from personalization_assets.warehouse import WarehouseConnection

    url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    write_customers(url, [{"customer_id": 1, "email": "u1@example.org", "email_opt_in": True,
                           "consent_processing": True, "created_at": PAST, "updated_at": PAST}])
    db = local_env / "warehouse.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    old_raw = pd.DataFrame([{**dict.fromkeys(["first_name", "last_name", "phone", "street", "city", "postcode",
                                              "country", "birth_date", "timezone", "locale"]),
                             "customer_id": 50, "email": "u50@example.org", "email_opt_in": False,
                             "consent_processing": True, "created_at": pd.Timestamp(PAST, tz="UTC"),
                             "updated_at": pd.Timestamp(PAST, tz="UTC")}])
    old_staged = stage_customers(old_raw.astype({"email_opt_in": object}), now=NOW.replace(tzinfo=timezone.utc)).valid
    with duckdb.connect(str(db)) as raw_conn:
        conn = WarehouseConnection(raw_conn, "duckdb")
        conn.insert_frame("raw", "crm_customers", old_raw)
        conn.insert_frame("staging", "customers", old_staged.drop(columns=["birth_date_issue"]))
    assert _query(db, "select data_type from information_schema.columns where table_name = 'crm_customers' "
                      "and column_name = 'email_opt_in'") == [("BOOLEAN",)]

    result = _materialize(url)
    assert result.success, [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    assert _query(db, "select data_type from information_schema.columns where table_name = 'crm_customers' "
                      "and column_name = 'email_opt_in'") == [("VARCHAR",)]
    assert dict(_query(db, "select customer_id, email_opt_in from raw.crm_customers")) == {1: "1", 50: "false"}
    assert dict(_query(db, "select record_id, email_opt_in from staging.customers")) == {"crm:1": True,
                                                                                       "crm:50": False}
    assert _query(db, "select count(birth_date_issue) from staging.customers") == [(0,)]


def _freeze_cursor(db, name: str, cursor: dict) -> None:
    """Leave a cursor as the older code did after reading a row dated 2030."""
    from personalization_assets.assets.common import prepare_cursors, write_cursor
    from personalization_assets.warehouse import WarehouseConnection

    db.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(db)) as raw_conn:
        conn = WarehouseConnection(raw_conn, "duckdb")
        prepare_cursors(conn)
        write_cursor(conn, name, cursor)


def test_a_cursor_frozen_in_the_future_by_older_code_heals(local_env, crm):
    db = local_env / "warehouse.duckdb"
    _freeze_cursor(db, "crm_customers", {"updated_at": "2030-01-01T00:00:00", "customer_id": 7})
    _insert(crm, [_row(1), _row(2, updated_at=NOW - timedelta(minutes=30))])  # changes it never loaded
    result = _materialize(crm[0])
    assert result.success
    assert {r for (r,) in _query(db, "select record_id from staging.customers")} == {"crm:1", "crm:2"}
    metadata = result.asset_materializations_for_node("raw__crm_customers")[0].metadata
    assert "2030-01-01" in metadata["cursor_reset"].value
    cursor = json.loads(_query(db, "select cursor_json from ops.cursors where name = 'crm_customers'")[0][0])
    assert datetime.fromisoformat(cursor["updated_at"]) <= datetime.now(timezone.utc) - WINDOW.safety_lag


def test_a_duplicate_id_is_never_dropped_silently(local_env, crm):
    _insert(crm, [_row(1, email="old@example.org", updated_at=PAST - timedelta(minutes=10)),
                  _row(1, email="new@example.org"),  # the same id updated: the latest version loads
                  _row(2, email="a@example.org"), _row(2, email="b@example.org")])  # contradicting versions
    result = _materialize(crm[0])
    assert result.success
    db = local_env / "warehouse.duckdb"
    assert _query(db, "select customer_id, email from raw.crm_customers") == [(1, "new@example.org")]
    (record, rule, payload), = _query(db, "select record_id, rule, raw_payload from quarantine.crm_customers")
    assert (record, rule) == ("crm:2", "raw.duplicate_key")
    assert sorted(version["email"] for version in json.loads(payload)) == ["a@example.org", "b@example.org"]
    metadata = result.asset_materializations_for_node("raw__crm_customers")[0].metadata
    assert metadata["superseded_versions"].value == 1
