"""Loading e-mail events costs what the batch holds: each distinct recipient address is validated
once, and known events are looked up by the batch's keys, not by reading the whole raw table."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from personalization_assets.assets import email_events as assets
from personalization_assets.email_events.bus import email_events_bus_url
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
        more = [f"n{i}" for i in range(2_000)]
        written = assets._store_raw(conn, _batch(["e1", "e2499", "new1", "new2", "new1", *more]), empty, {})
        monkeypatch.undo()
        assert written == 2_002
        assert conn.scalar("select count(*) from raw.email_events") == 4_502
        assert conn.scalar("select count(distinct event_key) from raw.email_events") == 4_502
    reads = [s for s in queries if "raw.email_events" in s]
    assert reads and all(" where " in s for s in reads), reads
    assert len(reads) == 1, "DuckDB looks the batch's 2,005 keys up in one query, not one per 1,000 keys"


def _raw_with_edge_cases() -> pd.DataFrame:
    """Raw rows that exercise every rule the staging SQL must share with the pandas rules: a
    provider event received twice, clicks and opens before, within, at and after 10 s of the first
    delivery, a provider whose message ids collide with another's, a missing message id, an event
    already marked a machine event, and suppressions seen twice, by group and after a soft bounce."""
    def ev(i, kind, seconds, message="m1", provider="sendgrid", email="a@example.org", machine=False, received=0):
        return {"provider": provider, "provider_event_id": str(i), "type": kind, "email": email,
                "customer_key": f"c{i % 3}", "campaign_id": "spring", "message_id": message, "url": None,
                "timestamp": f"2026-01-01T10:{seconds // 60:02d}:{seconds % 60:02d}+00:00", "bounce_class": None,
                "is_machine": machine, "raw_payload": "{}", "origin": "webhook",
                "received_at": f"2026-01-02T00:00:{received:02d}+00:00"}
    rows = [ev(1, "delivered", 0), ev(2, "click", 3), ev(3, "click", 40), ev(4, "open", 9), ev(5, "open", 10),
            ev(6, "click", 1, message="m2"), ev(7, "delivered", 5, message="m2"), ev(8, "delivered", 2),
            ev(9, "click", 4, provider="mailgun"), ev(10, "delivered", 0, provider="mailgun", message="other"),
            ev(11, "click", 2, message=None), ev(12, "open", 500, machine=True),
            ev(13, "unsubscribe", 600), ev(14, "unsubscribe", 300, received=5), ev(15, "group_unsubscribe", 700),
            ev(16, "soft_bounce", 100, email="b@example.org"), ev(17, "bounce", 200, email="b@example.org"),
            ev(18, "spamreport", 900, email="c@example.org"), ev(19, "spamreport", 800, email="c@example.org")]
    frame = assets._raw_frame(rows, [r["origin"] for r in rows], [r["received_at"] for r in rows])
    again = frame[frame["provider_event_id"] == "3"].assign(received_at=pd.Timestamp("2026-01-03", tz="UTC"),
                                                             email="later-copy@example.org")
    return pd.concat([frame, again], ignore_index=True)


def test_staging_and_suppressions_in_sql_equal_the_pandas_rules(tmp_path):
    from personalization_assets.email_events.staging import (
        events_frame, flag_scanner_clicks, staging_events_sql, suppressions, suppressions_sql,
    )

    raw = _raw_with_edge_cases()
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    with warehouse.connect() as conn:
        conn.insert_frame("raw", "email_events", raw)
        staged = conn.query(staging_events_sql())
        conn.insert_frame("staging", "email_events", staged)
        suppressed = conn.query(suppressions_sql())
    ordered = raw.sort_values(["received_at", "event_key"])[model.EMAIL_EVENT_COLUMNS].to_dict("records")
    expected = flag_scanner_clicks(events_frame(ordered))
    assert len(staged) == len(raw) - 1 and "later-copy@example.org" not in set(staged["email"])
    assert staged["is_machine"].sum() == 3  # m1 was first delivered at 0 s: the click at 3 s, the open at 9 s; event 12
    pd.testing.assert_frame_equal(staged, expected, check_dtype=False)
    pd.testing.assert_frame_equal(suppressed, suppressions(expected), check_dtype=False)
    assert sorted(map(tuple, suppressed[["email", "reason"]].to_numpy())) == [
        ("a@example.org", "unsubscribe"), ("b@example.org", "hard_bounce"), ("c@example.org", "spam_report")]


def test_staging_reads_no_email_event_into_python(tmp_path, monkeypatch):
    """The assets run their rules in the warehouse: what they read back is counts and a preview."""
    import dagster as dg

    from personalization_assets.warehouse import WarehouseConnection

    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    with warehouse.connect() as conn:
        conn.insert_frame("raw", "email_events", _raw_with_edge_cases())
    read = []
    real = WarehouseConnection.query

    def spy(self, sql, params=()):
        frame = real(self, sql, params)
        read.append(len(frame))
        return frame

    monkeypatch.setattr(WarehouseConnection, "query", spy)
    result = dg.materialize([assets.staging_email_events, assets.email_suppressions],
                            resources={"warehouse": warehouse})
    assert result.success
    assert max(read) <= 10
    metadata = result.asset_materializations_for_node("staging__email_events")[0].metadata
    assert metadata["dagster/row_count"].value == 19 and metadata["duplicates_dropped"].value == 1


def _sendgrid_line(i: int, email: str = "ann@example.org") -> str:
    return json.dumps({"event": "open", "email": email, "timestamp": 1767225600 + i, "sg_event_id": f"ev{i}",
                       "sg_message_id": "m1"}, sort_keys=True)


def test_an_export_file_loads_a_chunk_at_a_time_with_the_same_rows_lines_and_ledger(local_env, monkeypatch):
    """A file is read, normalized and stored a bounded chunk at a time; an event repeated across
    chunks is stored once, a bad line keeps its line number, and only the last chunk writes the
    file's ledger row (a load cut short loads the file again, and its events dedup)."""
    from personalization_assets.email_events.files import iter_file, load_file, scan

    monkeypatch.delenv("EMAIL_LANDING_DIR", raising=False)
    monkeypatch.delenv("EMAIL_EVENTS_BUS_URL", raising=False)
    landing = local_env / "landing" / "email"
    landing.mkdir(parents=True)
    lines = [_sendgrid_line(i) for i in range(7)] + ["{not json", "", _sendgrid_line(3),
                                                       '{"event": "open", "email": "x@example.org", "timestamp": NaN}']
    (landing / "sendgrid_export.jsonl").write_text("\r\n".join(lines) + "\n")
    (f,) = scan(landing)
    good, bad = load_file(f)
    assert [g.provider_event_id for g in good] == [f"ev{i}" for i in range(7)] + ["ev3"]
    assert [(b.record_id, b.rule) for b in bad] == [("file:sendgrid_export.jsonl:8", "file.json"),
                                                     ("sendgrid:sha256:" + bad[1].record_id.split(":")[-1], "sg_event_id.missing")]
    assert bad[0].message.startswith("line 8 is not JSON: Expecting property name")
    assert [len(g) + len(b) for g, b in iter_file(f, chunk=3)] == [3, 3, 3, 1]

    warehouse = DuckDBWarehouse(database=str(local_env / "w.duckdb"))
    with warehouse.connect() as conn:
        parts = list(assets._parts(email_events_bus_url(), 0, 0, set(), chunk=3))
        assert [len(p.ledger) for p in parts] == [0, 0, 0, 0, 1]  # the empty webhook bus first
        written = [assets._store_raw(conn, p.frame, p.rejected, p.cursors, p.ledger) for p in parts]
        assert written == [0, 3, 3, 1, 0] and sum(written) == 7
        assert conn.scalar("select count(*) from raw.email_events") == 7
        assert conn.scalar("select count(*) from quarantine.email_events") == 2
        assert conn.query("select name, events, quarantined from ops.email_files").values.tolist() == [
            ["sendgrid_export.jsonl", 8, 2]]


def test_a_files_frame_built_by_column_equals_the_frame_of_its_records():
    from datetime import datetime, timezone

    from personalization_assets.email_events.normalize import normalize

    raw = [("sendgrid", {"event": "open", "sg_event_id": "s1", "email": "Ann@Example.org", "timestamp": 1767225600.25,
                         "sg_machine_open": True, "customer_key": "k1"}),
           ("sendgrid", {"event": "bounce", "type": "blocked", "sg_event_id": "s2", "email": "b@example.com",
                         "timestamp": "2026-01-01T10:00:00.123456+02:00"}),
           ("sendgrid", {"event": "open", "sg_event_id": "s1", "email": "other@example.org", "timestamp": 1}),
           ("mailgun", {"event-data": {"event": "clicked", "id": "m1", "recipient": "c@example.net", "timestamp": 1767225600,
                                       "url": "https://x.example/", "client-info": {"bot": "apple"}}}),
           ("generic", {"id": "g1", "type": "unsubscribe", "email": "d@example.org", "timestamp": "2026-01-02T00:00:00Z",
                        "campaign_id": "", "is_machine": "1"})]
    good = [normalize(provider, event) for provider, event in raw]
    now = datetime(2026, 1, 3, tzinfo=timezone.utc)
    by_record = assets._raw_frame([g.to_record() for g in good], ["file:x.jsonl"] * len(good), [now] * len(good))
    by_column = assets._file_frame(good, "file:x.jsonl", now)
    assert len(by_column) == 4  # the second copy of s1 is dropped, as from records
    pd.testing.assert_frame_equal(by_column, by_record, check_exact=True)
    pd.testing.assert_frame_equal(assets._file_frame([], "file:x.jsonl", now), assets._raw_frame([], [], []))
