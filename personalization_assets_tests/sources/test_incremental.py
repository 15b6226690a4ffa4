"""The shared rules of incremental loads: the watermark never passes now - lag, and screening sets
aside unloadable rows with a reason (never raising, never dropping silently)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from personalization_assets.normalize import parse_timestamps
from personalization_assets.quality.quarantine import empty, merge
from personalization_assets.sources.incremental import WINDOW, IncrementalWindow, screen

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.just(timezone.utc))


@settings(max_examples=200, deadline=None)
@given(st.none() | moments, st.none() | moments, moments)
def test_the_watermark_never_passes_now_minus_lag_nor_moves_back(watermark, newest, now):
    window = IncrementalWindow()
    moved = window.advance(watermark, newest, now)
    if watermark is not None:
        assert moved >= watermark  # never back (an earlier cursor was already safe)
    if newest is not None and (watermark is None or watermark <= now - window.safety_lag):
        assert moved <= now - window.safety_lag
    if watermark is None and newest is None:
        assert moved is None
    if moved is not None:
        assert window.read_from(moved) == moved - window.lookback


def _frame(rows):
    frame = pd.DataFrame(rows, columns=["id", "updated_at", "value"])
    return frame, parse_timestamps(frame["updated_at"], day_first=False)


def test_screen_sets_aside_each_bad_row_with_its_reason():
    frame, stamps = _frame([
        ("a", "2026-06-01T10:00:00Z", 1), (None, "2026-06-01T10:00:00Z", 2), ("", "2026-06-01T10:00:00Z", 3),
        ("b", "not a time", 4), ("c", "2030-01-01T00:00:00Z", 5), ("d", "2026-06-01T12:04:00Z", 6),
    ])
    out = screen(frame, key="id", stamps=stamps, record_ids=frame["id"], now=NOW)
    assert out.rows["id"].tolist() == ["a", "d"]  # d is within the clock skew: loaded
    assert out.rejected["rule"].tolist() == ["raw.key_missing", "raw.key_missing", "raw.updated_at_invalid",
                                             "raw.updated_at_future"]
    assert out.rejected["record_id"].iloc[0] != out.rejected["record_id"].iloc[1]  # two keyless, two rows
    assert "'not a time'" in out.rejected["message"].iloc[2]
    assert out.newest == datetime(2026, 6, 1, 12, 4, tzinfo=timezone.utc)
    assert WINDOW.advance(None, out.newest, NOW) == NOW - WINDOW.safety_lag


def test_identical_keyless_rows_are_two_quarantine_rows_and_stay_so_on_a_rerun():
    """Without a key, two orders with the same content cannot be told from each other, but they are
    two records: each gets its own quarantine row, and a rerun of the same listing adds none."""
    frame, stamps = _frame([(None, "2026-06-01T10:00:00Z", 1), ("a", "2026-06-01T10:00:00Z", 1),
                            (None, "2026-06-01T10:00:00Z", 1), (None, "2026-06-01T10:00:00Z", 2)])
    runs = [screen(frame, key="id", stamps=stamps, record_ids=frame["id"], now=NOW).rejected for _ in range(2)]
    assert runs[0]["rule"].tolist() == ["raw.key_missing"] * 3
    assert runs[0]["record_id"].nunique() == 3
    assert runs[0]["record_id"].tolist() == runs[1]["record_id"].tolist()
    table = empty()
    for rejected in runs:
        table = merge(table, rejected.assign(source="shop_orders"), now=NOW)
    assert len(table) == 3 and table["attempts"].tolist() == [2, 2, 2]


def test_duplicates_keep_the_latest_version_and_never_drop_a_contradiction():
    frame, stamps = _frame([
        ("a", "2026-06-01T09:00:00Z", 1), ("a", "2026-06-01T10:00:00Z", 2),  # an update
        ("b", "2026-06-01T09:00:00Z", 1), ("b", "2026-06-01T09:00:00Z", 1),  # the same row read twice
        ("c", "2026-06-01T09:00:00Z", 1), ("c", "2026-06-01T09:00:00Z", 2),  # contradicting versions
    ])
    out = screen(frame, key="id", stamps=stamps, record_ids=frame["id"], now=NOW)
    assert out.rows[["id", "value"]].values.tolist() == [["a", 2], ["b", 1]]
    assert out.superseded == 1
    assert out.rejected[["record_id", "rule"]].values.tolist() == [["c", "raw.duplicate_key"]]
    assert "2 different versions" in out.rejected["message"].iloc[0]


def test_screen_of_nothing_is_nothing():
    frame, stamps = _frame([])
    out = screen(frame, key="id", stamps=stamps, record_ids=frame["id"], now=NOW)
    assert out.rows.empty and out.rejected.empty and out.newest is None and out.superseded == 0


def _rejected(*pairs):
    return pd.DataFrame([{"source": "crm_customers", "record_id": r, "rule": rule, "message": "m",
                          "raw_payload": "{}"} for r, rule in pairs])


def test_only_the_raw_layer_releases_raw_rejections():
    table = merge(empty(), _rejected(("crm:1", "raw.updated_at_future"), ("crm:2", "customers.email_valid")),
                  now=NOW)
    # Staging re-validates the older version of crm:1 it holds: the raw row must stay open.
    after_staging = merge(table, _rejected(), checked_ids=["crm:1", "crm:2"], now=NOW).set_index("record_id")
    assert after_staging.loc["crm:1", "status"] == "open" and after_staging.loc["crm:2", "status"] == "released"
    # A later version of crm:1 loads in raw: now it is released (and staging rows are not the raw layer's).
    table = merge(table, _rejected(), checked_ids=["crm:1", "crm:2"], now=NOW, raw_layer=True).set_index("record_id")
    assert table.loc["crm:1", "status"] == "released" and table.loc["crm:2", "status"] == "open"


stamps_text = st.sampled_from(["2026-06-01T10:00:00Z", "2026-06-01T11:00:00+02:00", "2026-06-01T12:03:00Z",
                               "2031-01-01T00:00:00Z", "31/02/2026", "", "yesterday", None, 1780000000])
orders = st.lists(st.one_of(
    st.fixed_dictionaries({"order_id": st.sampled_from(["a", "b", "c", "", None, 7]), "updated_at": stamps_text,
                           "total": st.sampled_from(["1.00", "2.00", None])}),
    st.sampled_from([None, "text", 3, ["x"]])), max_size=12)


@settings(max_examples=150, deadline=None)
@given(orders)
def test_every_order_is_loaded_or_quarantined_never_lost(items):
    from personalization_assets.sources.orders_api import screen_orders

    out = screen_orders(items, now=NOW)
    loaded = out.rows["order_id"].tolist()
    assert len(loaded) == len(set(loaded))  # one version per order
    assert out.rows["updated_at"].notna().all()
    stamps = parse_timestamps(out.rows["updated_at"], day_first=False)["ts"]
    assert (stamps <= pd.Timestamp(NOW) + WINDOW.clock_skew).all()  # nothing from the future loads
    accounted = set(loaded) | set(out.rejected["record_id"])
    for item in items:
        key = item.get("order_id") if isinstance(item, dict) else None
        if key not in (None, ""):
            assert str(key) in accounted  # loaded, or quarantined with a reason
    keyless = [i for i in items if not isinstance(i, dict) or i.get("order_id") in (None, "")]
    assert (out.rejected["rule"] == "raw.key_missing").sum() == len(keyless)
    assert out.rejected.loc[out.rejected["rule"] == "raw.key_missing", "record_id"].nunique() == len(keyless)
