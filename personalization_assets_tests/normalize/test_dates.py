from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personalization_assets.normalize import normalize_timezones, parse_timestamps
from personalization_assets.normalize.dates import _parse_one


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_ambiguous_day_and_month_follow_the_source_setting_only():
    raw = pd.Series(["03/04/2024 10:00", "04/03/2024 10:00", "13/04/2024", "04/13/2024"])
    day_first = parse_timestamps(raw, day_first=True)
    month_first = parse_timestamps(raw, day_first=False)
    assert day_first["ts"].tolist()[:3] == [_utc("2024-04-03 10:00"), _utc("2024-03-04 10:00"), _utc("2024-04-13")]
    assert month_first["ts"].tolist()[:2] == [_utc("2024-03-04 10:00"), _utc("2024-04-03 10:00")]
    assert month_first["ts"][3] == _utc("2024-04-13")
    # The day that cannot be a month is an issue, never swapped to fit the row.
    assert pd.isna(day_first["ts"][3]) and "month" in day_first["ts_issue"][3]
    assert pd.isna(month_first["ts"][2]) and "month" in month_first["ts_issue"][2]


def test_mixed_formats_and_offsets_become_utc():
    raw = pd.Series([
        "2024-03-04T10:00:00+02:00", "2024-03-04T08:00:00Z", "2024-03-04 08:00", "1709539200",
        "1709539200000", "Mon, 04 Mar 2024 09:00:00 +0100", "March 4, 2024 8:00", "2024/03/04 08:00",
        "04.03.24 8:00 am", pd.Timestamp("2024-03-04 08:00", tz="UTC"), 1709539200,
    ], dtype=object)
    out = parse_timestamps(raw, day_first=True)
    assert out["ts_issue"].isna().all(), out[out["ts_issue"].notna()]
    assert (out["ts"] == _utc("2024-03-04 08:00")).all()
    assert str(out["ts"].dtype) == "datetime64[ns, UTC]"


def test_naive_times_are_read_in_the_assumed_zone_and_dst_gaps_are_issues():
    raw = pd.Series(["2024-07-01 12:00", "01/07/2024 12:00", "2024-03-31 02:30", "31/03/2024 02:30",
                     "2024-10-27 02:30"])
    out = parse_timestamps(raw, day_first=True, assume_tz="Europe/Berlin")
    assert out["ts"].tolist()[:2] == [_utc("2024-07-01 10:00")] * 2
    for i in (2, 3, 4):  # spring-forward gap and fall-back overlap
        assert pd.isna(out["ts"][i]) and "Europe/Berlin" in out["ts_issue"][i]


@pytest.mark.parametrize("raw, reason", [
    (None, "missing"), ("", "missing"), ("garbage", "unparseable"), ("2024-02-30", "invalid"),
    ("2024-02-30T10:00:00Z", "invalid"), ("2024-03-04T10:00:00+2:00", "unparseable"),
    ("10:00 03/04 EST5", "unparseable"), ("5 Mar 2024 10:00 XYZT", "time zone"), (True, "not a timestamp"),
    ("31/12/99999", "unparseable"), ("9999999999", "out of range"), ("1" * 19, None), (float("inf"), "not a timestamp"),
])
def test_unusable_values_carry_a_reason(raw, reason):
    out = parse_timestamps(pd.Series([raw], dtype=object), day_first=True)
    if reason is None:  # 19 digits: epoch nanoseconds, read exactly
        assert out["ts"].item() == pd.Timestamp(int(raw), unit="ns", tz="UTC")
        return
    assert pd.isna(out["ts"].item())
    assert reason in out["ts_issue"].item()


def test_a_wrong_zone_setting_is_a_configuration_error():
    with pytest.raises(Exception):
        parse_timestamps(pd.Series(["2024-01-01"]), day_first=True, assume_tz="Mars/Olympus")


def test_time_zones_map_to_iana_spelling():
    out = normalize_timezones(pd.Series(["europe/london", " Europe/Berlin ", "America/New York", "CET",
                                         "Mars/Base", None, "../../etc/passwd"]))
    assert out["timezone"].tolist()[:4] == ["Europe/London", "Europe/Berlin", "America/New_York", "CET"]
    assert out["timezone_issue"].tolist()[4:] == ["unknown time zone: Mars/Base", "missing",
                                                   "unknown time zone: ../../etc/passwd"]


iso_with_offset = st.builds(
    lambda when, sep, digits, offset, colon: (
        when.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{when.microsecond:06d}"[: digits + 1] if digits else "")
        + ("Z" if offset is None else f"{'+' if offset >= 0 else '-'}{abs(offset) // 60:02d}{':' if colon else ''}{abs(offset) % 60:02d}")),
    st.datetimes(min_value=datetime(1700, 1, 1), max_value=datetime(2250, 1, 1)),
    st.sampled_from(["T", " "]), st.integers(0, 6), st.one_of(st.none(), st.integers(-14 * 60, 14 * 60)),
    st.booleans(),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(iso_with_offset, min_size=1, max_size=20))
def test_the_arrow_fast_path_reads_iso_exactly_as_pandas(texts):
    got = parse_timestamps(pd.Series(texts, dtype=object), day_first=True)["ts"]
    expected = pd.to_datetime(pd.Series(texts), format="ISO8601", utc=True)
    pd.testing.assert_series_equal(got, expected, check_names=False)


def _one_by_one(texts: list[str], day_first: bool, tz: str) -> list:
    """The per-value path alone: each value parsed in a column of its own, one at a time."""
    out = []
    for text in texts:
        try:
            out.append(_parse_one(text, day_first=day_first, tz=tz).as_unit("ns"))
        except Exception:  # noqa: BLE001 - any failure is a missing value with an issue
            out.append(pd.NaT)
    return out


numeric_dates = st.builds(
    lambda d, m, y, sep, time, h, mi, s: f"{d}{sep}{m}{sep}{y}" + (f"{time}{h}:{mi:02d}" + (f":{s:02d}" if s is not None else "") if time else ""),
    st.integers(0, 32), st.integers(0, 13), st.integers(1600, 2300), st.sampled_from("/.-"),
    st.sampled_from(["", " ", "T"]), st.integers(0, 25), st.integers(0, 59), st.one_of(st.none(), st.integers(0, 60)),
)
epochs = st.integers(-10**18, 10**18).map(str)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(numeric_dates, epochs), min_size=1, max_size=25), st.booleans(),
       st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
def test_the_bulk_paths_read_exactly_as_the_per_value_path(texts, day_first, tz):
    got = parse_timestamps(pd.Series(texts, dtype=object), day_first=day_first, assume_tz=tz)
    expected = _one_by_one(texts, day_first, tz)
    for text, ts, issue, want in zip(texts, got["ts"], got["ts_issue"], expected):
        assert (pd.isna(ts) and pd.isna(want) and issue) or (ts == want and issue is None), (text, ts, want)
