"""Loading e-mail events costs what the batch holds: each distinct recipient address is validated
once, and known events are looked up by the batch's keys, not by reading the whole raw table."""

from __future__ import annotations

import pandas as pd
import pytest

from personalization_assets.assets import email_events as assets
from personalization_assets.email_events import model
from personalization_assets.resources.warehouse import DuckDBWarehouse


def test_each_distinct_address_is_validated_once_with_the_same_answers(monkeypatch):
    calls = []
    real = model.validate_email

    def counting(address, **kwargs):
        calls.append(address)
        return real(address, **kwargs)

    monkeypatch.setattr(model, "validate_email", counting)
    model._validated.cache_clear()
    addresses = ["Ann@Example.org", " ann@example.org ", "bob@example.com", "not-an-address"] * 50
    normalized, invalid = [], []
    for address in addresses:
        try:
            normalized.append(model.normalize_email(address))
        except model.Invalid as exc:
            invalid.append((exc.rule, str(exc)))
    assert sorted(set(calls)) == ["Ann@Example.org", "ann@example.org", "bob@example.com", "not-an-address"]
    assert len(calls) == 4
    assert set(normalized) == {"ann@example.org", "bob@example.com"} and len(normalized) == 150
    assert len(invalid) == 50 and invalid[0][0] == "email.invalid"
    assert invalid[0][1].startswith("recipient 'not-an-address' is not a valid address: ")
    with pytest.raises(model.Invalid, match="no recipient"):
        model.normalize_email("  ")


def _batch(keys: list[str]) -> pd.DataFrame:
    records = [{"provider": "sendgrid", "provider_event_id": k, "event_type": "open", "email": "a@example.org",
                "timestamp": "2026-01-01T00:00:00Z", "origin": "webhook", "received_at": "2026-01-01T00:00:01Z"}
               for k in keys]
    return assets._raw_frame(records, ["webhook"] * len(keys), ["2026-01-01T00:00:01Z"] * len(keys))


def test_a_batch_inserts_only_unknown_events_and_never_reads_the_whole_table(tmp_path, monkeypatch):
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    empty = assets._quarantine_rows([])
    with warehouse.connect() as conn:
        assert assets._store_raw(conn, _batch([f"e{i}" for i in range(2_500)]), empty, {}) == 2_500
        queries = []
        real = type(conn).query

        def spy(self, sql, params=()):
            queries.append(sql)
            return real(self, sql, params)

        monkeypatch.setattr(type(conn), "query", spy)
        written = assets._store_raw(conn, _batch(["e1", "e2499", "new1", "new2", "new1"]), empty, {})
        monkeypatch.undo()
        assert written == 2
        assert conn.scalar("select count(*) from raw.email_events") == 2_502
        assert conn.scalar("select count(distinct event_key) from raw.email_events") == 2_502
    reads = [s for s in queries if "raw.email_events" in s]
    assert reads and all(" where " in s for s in reads), reads
