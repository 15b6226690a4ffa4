"""raw.shop_orders loads the API's listing a chunk at a time, each chunk committed with its
cursor: a listing that stops early keeps the chunks before it, and orders read in two chunks end
as they would in one load (the latest version wins, contradicting versions load neither)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from personalization_assets.assets import raw
from personalization_assets.demo.orders_api_server import ApiBehaviour

from .test_orders_faults import PAST, NOW, _errors, _good, _load, _order, _query, _write


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(raw, "ORDERS_CHUNK", 10)  # pages of 5: two pages a chunk


def _cursor(db):
    rows = _query(db, "select cursor_json from ops.cursors where name = 'shop_orders'")
    return datetime.fromisoformat(json.loads(rows[0][0])["updated_since"]) if rows else None


def test_a_listing_that_stops_early_keeps_the_chunks_committed_before(local_env, small_chunks, tmp_path):
    _write(tmp_path, _good(30))
    result = _load(tmp_path, ApiBehaviour(drop_next_after=4))  # pages 1-4 come, then no next link
    assert not result.success
    assert "10 orders committed with their cursor, in 1 chunk(s)" in _errors(result)[0]
    db = local_env / "warehouse.duckdb"
    assert _query(db, "select count(*) from raw.shop_orders")[0][0] == 10  # chunk 2 came last: not committed
    assert _cursor(db) == PAST + timedelta(minutes=9)  # the newest order committed

    # The next load reads on from the cursor's look-back window and completes the listing.
    result = _load(tmp_path)
    assert result.success, _errors(result)
    assert _query(db, "select count(*) from raw.shop_orders")[0][0] == 30
    assert _cursor(db) == PAST + timedelta(minutes=29)
    metadata = result.asset_materializations_for_node("raw__shop_orders")[0].metadata
    assert (metadata["chunks"].value, metadata["unchanged"].value, metadata["rows_loaded"].value) == (4, 10, 20)


def test_versions_read_in_two_chunks_end_as_in_one_load(local_env, small_chunks, tmp_path):
    # The listing is sorted by updated_at: the later versions land in the next chunk.
    _write(tmp_path, _good(8) + [
        _order("twice", PAST), _order("clash", PAST, total="1.00"),  # chunk 1 (orders 1-10)
        _order("twice", PAST + timedelta(hours=1), status="shipped"),  # an update, chunk 2
        _order("clash", PAST + timedelta(hours=2), total="1.00"),
        _order("clash", PAST + timedelta(hours=2), total="9.00"),  # contradicting versions, chunk 2
    ])
    result = _load(tmp_path)
    assert result.success, _errors(result)
    db = local_env / "warehouse.duckdb"
    assert _query(db, "select status from raw.shop_orders where order_id = 'twice'") == [("shipped",)]
    assert _query(db, "select count(*) from raw.shop_orders where order_id = 'clash'")[0][0] == 0
    (record, rule, payload), = _query(db, "select record_id, rule, raw_payload from quarantine.shop_orders")
    assert (record, rule) == ("clash", "raw.duplicate_key")
    assert sorted(version["total"] for version in json.loads(payload)) == ["1.00", "9.00"]
    metadata = result.asset_materializations_for_node("raw__shop_orders")[0].metadata
    assert metadata["superseded_versions"].value == 2  # twice's first version and clash's
    assert metadata["dagster/row_count"].value == 9  # o000-o007 and twice
    assert _cursor(db) == PAST + timedelta(hours=2)


def test_a_chunk_moves_the_cursor_only_while_the_listing_is_in_order():
    load = raw._OrdersLoad(watermark=None, now=NOW)
    load.newest = PAST
    assert load.next_cursor(last=False) == {"updated_since": PAST.isoformat()}
    load.in_order = False  # a later chunk held an older order: a page after it may too
    assert load.next_cursor(last=False) is None
    assert load.next_cursor(last=True) == {"updated_since": PAST.isoformat()}


def test_an_order_corrected_at_the_source_releases_its_quarantine_row(local_env, small_chunks, tmp_path):
    _write(tmp_path, _good(12) + [_order("fixed", "31/02/2026 25:00")])
    assert _load(tmp_path).success
    db = local_env / "warehouse.duckdb"
    assert _query(db, "select record_id, status from quarantine.shop_orders") == [("fixed", "open")]

    _write(tmp_path, _good(12) + [_order("fixed", PAST + timedelta(minutes=30))])  # a chunk with no rejection
    result = _load(tmp_path)
    assert result.success, _errors(result)
    assert _query(db, "select record_id, status from quarantine.shop_orders") == [("fixed", "released")]
    assert _query(db, "select count(*) from raw.shop_orders where order_id = 'fixed'")[0][0] == 1


def test_identical_keyless_orders_in_two_chunks_are_two_quarantine_rows(local_env, small_chunks, tmp_path):
    keyless = {"customer_id": "x", "updated_at": PAST.isoformat(), "total": "1.00"}
    earlier = [_order(f"e{i}", PAST - timedelta(minutes=10 - i)) for i in range(9)]
    _write(tmp_path, earlier + [keyless, keyless] + _good(9, start=1))  # in updated_at order: 10th and 11th
    for _ in range(2):  # a rerun of the same listing adds no row
        result = _load(tmp_path)
        assert result.success, _errors(result)
        rows = _query(local_env / "warehouse.duckdb", "select record_id, rule from quarantine.shop_orders")
        assert len(rows) == 2 and {rule for _, rule in rows} == {"raw.key_missing"}
