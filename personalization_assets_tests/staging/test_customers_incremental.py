"""staging.customers staged incrementally, in chunks, equals the whole-table `stage_customers` row for
row (valid rows and quarantine), on the demo's CRM rows and on messy rows built from the vendored
fixtures (FEBRL names and birth dates, email-validator's syntax cases, phonenumbers' examples);
after changes, only the changed rows are staged again and the table still equals a full restage."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from personalization_assets.assets.common import read_table
from personalization_assets.assets.staging import restage_customers
from personalization_assets.demo.generator import generate
from personalization_assets.sources.crm import CUSTOMER_COLUMNS, screen_customers
from personalization_assets.staging import stage_customers
from personalization_assets.staging.customers_incremental import STATE
from personalization_assets.warehouse import WarehouseConnection

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ANCHOR = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _fixture_rows() -> list[dict]:
    """CRM rows whose values come from the fixtures: names and birth dates as FEBRL typed them,
    addresses from the e-mail syntax cases, phone numbers from phonenumbers' examples."""
    with (FIXTURES / "febrl" / "dataset1.csv").open() as f:
        people = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)][:300]
    with (FIXTURES / "email-test-cases" / "email_validator_syntax_cases.csv").open() as f:
        emails = [r["email_input"] for r in csv.DictReader(f)]
    with (FIXTURES / "phone-examples" / "phonenumbers_examples.csv").open() as f:
        phones = [(r["region"], r["national"], r["international"]) for r in csv.DictReader(f)][:400]
    consents = ["true", "no", "Y", "off", "1", "maybe", None, " TRUE "]
    rows = []
    for i, person in enumerate(people):
        region, national, international = phones[i % len(phones)]
        created = ANCHOR - timedelta(days=400 - i)
        rows.append({
            "customer_id": 200_000 + i, "first_name": person["given_name"] or None,
            "last_name": person["surname"].upper() if i % 3 == 0 else person["surname"],
            "email": emails[i % len(emails)], "phone": national if i % 2 else international,
            "street": f"  {person['street_number']} {person['address_1']} ", "city": person["suburb"],
            "postcode": person["postcode"], "country": [region, region.lower(), "Deutschland", "UK", "Mars"][i % 5],
            "birth_date": (["2999-01-01", "1850-05-05", "31/02/1990"][i % 3] if i % 40 == 0
                           else person["date_of_birth"] or None), "timezone": ["Europe/Berlin", "utc", "Nowhere/City"][i % 3],
            "locale": "en-AU", "email_opt_in": consents[i % len(consents)],
            "consent_processing": consents[(i + 3) % len(consents)],
            "created_at": (created + timedelta(days=800)) if i % 97 == 0 else created,  # a few in the future
            "updated_at": created + timedelta(days=1),
        })
    return rows


def _raw(rows: list[dict]) -> pd.DataFrame:
    """The rows as the raw load stores them (typed key, UTC times, text as stored)."""
    frame = pd.DataFrame(rows, columns=CUSTOMER_COLUMNS)
    return screen_customers(frame, now=ANCHOR + timedelta(days=1000)).rows


@pytest.fixture
def conn(tmp_path):
    raw = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield WarehouseConnection(raw, "duckdb")
    raw.close()


def _write_raw(conn: WarehouseConnection, frame: pd.DataFrame) -> None:
    conn.prepare_table("raw", "crm_customers", frame)
    conn.replace_frame("raw", "crm_customers", frame)


def _assert_equals_full_restage(conn: WarehouseConnection) -> pd.DataFrame:
    """staging.customers and the open quarantine equal `stage_customers` over the whole raw table."""
    expected = stage_customers(read_table(conn, "raw", "crm_customers", CUSTOMER_COLUMNS),
                               now=pd.Timestamp.now(tz="UTC").to_pydatetime())
    conn.raw.register("_expected", expected.valid)
    columns = ", ".join(f'"{c}"' for c in expected.valid.columns)
    try:
        assert conn.scalar("select count(*) from staging.customers") == len(expected.valid)
        for a, b in (("staging.customers", "_expected"), ("_expected", "staging.customers")):
            diff = conn.query(f"select {columns} from {a} except all select {columns} from {b}")
            assert diff.empty, f"rows of {a} not in {b}:\n{diff.head().T}"
    finally:
        conn.raw.unregister("_expected")
    held = conn.query("select record_id, rule, message, raw_payload from quarantine.crm_customers "
                      "where status = 'open'")
    want = {(r, rule, m, json.dumps(json.loads(p), sort_keys=True)) for r, p, rule, m in
            expected.quarantined.itertuples(index=False)}
    got = {(r, rule, m, json.dumps(json.loads(p), sort_keys=True)) for r, rule, m, p in held.itertuples(index=False)}
    assert got == want
    return expected.valid


def test_chunked_incremental_staging_equals_the_whole_table_restage(conn):
    demo = generate(seed=3, scale=0.4, anchor=ANCHOR).customers
    raw = _raw(demo + _fixture_rows())
    _write_raw(conn, raw)
    conn.execute("insert into raw.crm_customers (email, created_at, updated_at) values "
                 "('keyless@example.org', timestamptz '2025-01-01 00:00:00+00', timestamptz '2025-01-02 00:00:00+00')")

    run, by_rule = restage_customers(conn, chunk_rows=97)  # many chunks, one partly keyless
    assert run.rows_in == len(raw) + 1 and run.chunks == -(-run.rows_in // 97)
    valid = _assert_equals_full_restage(conn)
    assert 0 < len(valid) < len(raw)  # the fixtures bring rejections of several rules
    assert {"customers.email_valid", "customers.email_opt_in", "customers.source_id"} <= set(by_rule)
    assert valid["birth_date_issue"].notna().any() and valid["phone_issue"].notna().any()

    again, _ = restage_customers(conn, chunk_rows=97)
    assert again.rows_in == 0  # nothing changed (the keyless row is known by its fingerprint)

    # Change a few rows, fix a bad one, break a good one, drop one; erase a staged row behind its back.
    table = read_table(conn, "raw", "crm_customers", CUSTOMER_COLUMNS)
    keyed = table[table["customer_id"].notna()].sort_values("customer_id").reset_index(drop=True)
    bad = conn.scalar("select min(record_id) from quarantine.crm_customers where rule = 'customers.email_valid'")
    bad_id = int(bad.split(":")[1])
    good = keyed.loc[keyed["customer_id"] != bad_id, "customer_id"].iloc[:3].tolist()
    conn.execute("update raw.crm_customers set email = 'fixed@example.org' where customer_id = ?", [bad_id])
    conn.execute("update raw.crm_customers set email = 'no-at-sign' where customer_id = ?", [good[0]])
    conn.execute("update raw.crm_customers set first_name = '  mary-jane  ' where customer_id = ?", [good[1]])
    conn.execute("delete from raw.crm_customers where customer_id = ?", [good[2]])
    erased = conn.scalar("select max(record_id) from staging.customers")
    conn.execute("delete from staging.customers where record_id = ?", [erased])

    changed, _ = restage_customers(conn, chunk_rows=97)
    assert changed.rows_in == 4 and changed.deleted == 1  # 3 changed + the erased one
    _assert_equals_full_restage(conn)
    released = conn.scalar("select status from quarantine.crm_customers where record_id = ? "
                           "and rule = 'customers.email_valid'", [bad])
    assert released != "open"
    assert conn.scalar(f"select count(*) from {STATE}") == len(table) - 1


def test_full_restage_and_chunk_size_change_nothing(conn):
    _write_raw(conn, _raw(_fixture_rows()))
    restage_customers(conn, chunk_rows=1_000)
    first = conn.query("select * from staging.customers order by record_id")
    run, _ = restage_customers(conn, full=True, chunk_rows=13)
    assert run.rows_in == len(first) + conn.scalar("select count(distinct record_id) from quarantine.crm_customers")
    pd.testing.assert_frame_equal(first, conn.query("select * from staging.customers order by record_id"))
    _assert_equals_full_restage(conn)


def test_replay_stages_the_open_records_again_and_nothing_else(conn):
    _write_raw(conn, _raw(_fixture_rows()))
    restage_customers(conn)
    open_ids = conn.scalar("select count(distinct record_id) from quarantine.crm_customers where status = 'open'")
    assert open_ids > 10
    assert restage_customers(conn)[0].rows_in == 0
    replay, _ = restage_customers(conn, replay_open=True, chunk_rows=50)
    assert replay.rows_in == open_ids  # only the open ones, unchanged as they are
    _assert_equals_full_restage(conn)
