"""The quarantine merge: keyed on (record_id, rule), attempts, release of fixed records, rate verdict."""

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from personalization_assets.quality.quarantine import (
    COLUMNS, RateThresholds, empty, merge, quarantine_rate,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
T1, T2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)


def rejected(*pairs, source="shop_orders"):
    return pd.DataFrame([{"source": source, "record_id": r, "rule": rule, "message": f"{rule} failed",
                          "raw_payload": f'{{"id": "{r}"}}'} for r, rule in pairs])


def by_key(frame):
    return frame.set_index(["record_id", "rule"]).sort_index()


def test_first_run_opens_one_row_per_key():
    table = merge(empty(), rejected(("o1", "a"), ("o1", "a"), ("o2", "b")), checked_ids=["o1", "o2", "o3"], now=T0)
    assert list(table.columns) == COLUMNS
    assert len(table) == 2
    assert (table["status"] == "open").all() and (table["attempts"] == 1).all()
    assert table["released_at"].isna().all()


def test_reseen_rejection_bumps_attempts_and_keeps_first_seen():
    first = merge(empty(), rejected(("o1", "a")), checked_ids=["o1"], now=T0)
    second = merge(first, rejected(("o1", "a")), checked_ids=["o1"], now=T1)
    row = by_key(second).loc[("o1", "a")]
    assert len(second) == 1
    assert (row["attempts"], row["first_seen"], row["last_seen"]) == (2, pd.Timestamp(T0), pd.Timestamp(T1))


def test_fixed_record_is_released_unchecked_stays_open():
    first = merge(empty(), rejected(("o1", "a"), ("o2", "a")), checked_ids=["o1", "o2"], now=T0)
    second = merge(first, rejected(), checked_ids=["o1"], now=T1)  # o2 was not in this run
    rows = by_key(second)
    assert rows.loc[("o1", "a"), "status"] == "released"
    assert rows.loc[("o1", "a"), "released_at"] == pd.Timestamp(T1)
    assert rows.loc[("o2", "a"), "status"] == "open" and pd.isna(rows.loc[("o2", "a"), "released_at"])
    third = merge(second, rejected(), checked_ids=["o1", "o2"], now=T2)  # idempotent for o1
    assert by_key(third).loc[("o1", "a"), "released_at"] == pd.Timestamp(T1)
    assert len(third) == 2


def test_record_failing_another_rule_releases_the_old_rule_only():
    first = merge(empty(), rejected(("o1", "a")), checked_ids=["o1"], now=T0)
    second = merge(first, rejected(("o1", "b")), checked_ids=["o1"], now=T1)
    rows = by_key(second)
    assert (rows.loc[("o1", "a"), "status"], rows.loc[("o1", "b"), "status"]) == ("released", "open")


def test_released_key_rejected_again_reopens_without_duplicating():
    released = merge(merge(empty(), rejected(("o1", "a")), checked_ids=["o1"], now=T0), rejected(),
                     checked_ids=["o1"], now=T1)
    again = merge(released, rejected(("o1", "a")), checked_ids=["o1"], now=T2)
    row = by_key(again).loc[("o1", "a")]
    assert len(again) == 1
    assert (row["status"], row["attempts"], row["first_seen"]) == ("open", 1, pd.Timestamp(T2))


def test_table_without_released_at_column_is_upgraded():
    old = merge(empty(), rejected(("o1", "a")), checked_ids=[], now=T0).drop(columns=["released_at"])
    table = merge(old, rejected(), checked_ids=["o1"], now=T1)
    assert table.loc[0, "status"] == "released" and table.loc[0, "released_at"] == pd.Timestamp(T1)


@pytest.mark.parametrize(("rows", "open_rows", "level"), [
    (1000, 0, "ok"), (1000, 10, "ok"), (1000, 11, "warn"), (1000, 50, "warn"), (1000, 51, "error"), (0, 0, "ok"),
])
def test_quarantine_rate_levels(rows, open_rows, level):
    verdict = quarantine_rate(rows, open_rows, RateThresholds(warn=0.01, error=0.05))
    assert verdict.level == level
    assert verdict.share == (open_rows / rows if rows else 0.0)
