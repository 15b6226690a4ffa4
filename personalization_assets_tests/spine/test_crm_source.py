"""CRM extraction over a real SQLAlchemy connection: SQLite file and the PostgreSQL server."""

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from personalization_assets.sources import SourceError
from personalization_assets.sources.crm import CrmCursor, crm_metadata, extract_customers, write_customers

T0 = datetime(2026, 1, 1, 12, 0, 0)


def _rows(ids, updated_at):
    return [{"customer_id": i, "first_name": f"F{i}", "last_name": "L", "email": f"u{i}@example.org",
             "email_opt_in": True, "consent_processing": True, "created_at": updated_at,
             "updated_at": updated_at} for i in ids]


def _check_incremental(url: str) -> None:
    # Five rows share one updated_at: a page boundary inside them must neither skip nor repeat.
    write_customers(url, _rows(range(1, 6), T0) + _rows(range(6, 9), T0 + timedelta(minutes=1)))
    first = extract_customers(url, None, page_size=3)
    assert sorted(first["customer_id"]) == list(range(1, 9))

    # From a time on (inclusive): only the rows stamped then or later.
    again = extract_customers(url, T0 + timedelta(minutes=1), page_size=3)
    assert sorted(again["customer_id"]) == [6, 7, 8]

    # An update to an old row and a new row with an earlier id both come back, nothing else.
    write_customers(url, _rows([2], T0 + timedelta(minutes=5)) + _rows([9], T0 + timedelta(minutes=5)))
    delta = extract_customers(url, T0 + timedelta(minutes=2), page_size=3)
    assert sorted(delta["customer_id"]) == [2, 9]
    cursor = CrmCursor(datetime(2026, 1, 1, 12, 5, tzinfo=timezone.utc))
    assert CrmCursor.from_json(cursor.to_json()) == cursor
    assert CrmCursor.from_json({"updated_at": "2026-01-01T12:05:00", "customer_id": 9}) == cursor  # older form


def test_incremental_extraction_sqlite(tmp_path):
    _check_incremental(f"sqlite:///{tmp_path / 'crm.sqlite'}")


@pytest.mark.postgres
def test_incremental_extraction_postgres(postgres_url):
    engine = sa.create_engine(postgres_url)
    schema = f"crm_test_{datetime.now().strftime('%H%M%S%f')}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"create schema {schema}"))
    try:
        _check_incremental(f"{postgres_url}?options=-csearch_path%3D{schema}")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"drop schema {schema} cascade"))
        engine.dispose()


def test_unreachable_database_names_the_source():
    with pytest.raises(SourceError) as err:
        extract_customers("postgresql+psycopg2://nobody@127.0.0.1:1/none", None)
    assert str(err.value).startswith("crm: cannot read customers")


def test_missing_table_is_a_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    sa.create_engine(url).connect().close()
    with pytest.raises(SourceError, match="crm: .*customers"):
        extract_customers(url, None)


def test_schema_matches_extracted_columns():
    _, table = crm_metadata()
    from personalization_assets.sources.crm import CUSTOMER_COLUMNS

    assert [c.name for c in table.columns] == CUSTOMER_COLUMNS
