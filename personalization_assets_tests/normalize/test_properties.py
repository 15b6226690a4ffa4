"""Properties every normalizer keeps, checked with hypothesis on arbitrary text:
no exception, the input Series untouched, outputs aligned 1:1 with the input index, and
normalizing the normalized value gives the same value again (idempotence)."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personalization_assets.normalize import (
    clean_text, convert, display_name, map_lookup, match_key, normalize_countries, normalize_emails,
    normalize_phones, normalize_timezones, parse_timestamps, to_grams, to_minor,
)

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
odd_values = st.one_of(
    st.text(), st.text(min_size=300, max_size=3000), st.none(), st.integers(), st.floats(),
    st.sampled_from(["", " ", "\u00a0", "\ufeff", "ǆ", "ß", "İ", "ﬀ", "\u0301x", "NA", "EIRE", "+44 20 7946 0958",
                     "\ud800", "x@\ud800.com", "\udfffEUR"]),
)
columns = st.lists(odd_values, max_size=12).map(
    lambda values: pd.Series(values, dtype=object, index=[f"r{i}" for i in range(len(values))]))


def _unchanged_and_aligned(before: pd.Series, after_input: pd.Series, out) -> None:
    pd.testing.assert_series_equal(before, after_input)
    assert list(out.index) == list(before.index)


@PROPERTY
@given(columns)
def test_text_forms_are_idempotent_and_keep_the_input(s):
    before = s.copy()
    for fn in (clean_text, match_key, display_name):
        once = fn(s)
        _unchanged_and_aligned(before, s, once)
        pd.testing.assert_series_equal(fn(once), once)
    assert all(v is None or (v == v.strip() and "  " not in v) for v in clean_text(s))


@PROPERTY
@given(st.lists(st.one_of(odd_values, st.emails()), max_size=12).map(lambda v: pd.Series(v, dtype=object)))
def test_emails_are_idempotent_and_keep_the_input(s):
    before = s.copy()
    once = normalize_emails(s)
    _unchanged_and_aligned(before, s, once)
    valid = once["email"].notna()
    again = normalize_emails(once.loc[valid, "email"])
    pd.testing.assert_frame_equal(again, once[valid])
    keyed = normalize_emails(once.loc[valid, "email_key"])
    assert keyed["email_key"].tolist() == once.loc[valid, "email_key"].tolist()
    assert (once["email"].isna() == once["email_issue"].notna()).all()


phone_like = st.one_of(odd_values, st.from_regex(r"\+?[0-9 ()./-]{3,20}", fullmatch=True))


@PROPERTY
@given(st.lists(st.tuples(phone_like, st.sampled_from(["GB", "de", "US", None, "ZZ", "001", 5])), max_size=12))
def test_phones_are_idempotent_and_keep_the_input(pairs):
    raw = pd.Series([p for p, _ in pairs], dtype=object)
    region = pd.Series([r for _, r in pairs], dtype=object)
    before = raw.copy()
    once = normalize_phones(raw, region)
    _unchanged_and_aligned(before, raw, once)
    valid = once["phone"].notna()
    pd.testing.assert_frame_equal(normalize_phones(once.loc[valid, "phone"], region[valid]), once[valid])


@PROPERTY
@given(columns, st.booleans(), st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
def test_timestamps_are_idempotent_and_keep_the_input(s, day_first, tz):
    before = s.copy()
    once = parse_timestamps(s, day_first=day_first, assume_tz=tz)
    _unchanged_and_aligned(before, s, once)
    assert str(once["ts"].dtype) == "datetime64[ns, UTC]"
    parsed = once["ts"].notna()
    assert (once.loc[~parsed, "ts_issue"].notna()).all()
    iso = once.loc[parsed, "ts"].map(lambda t: t.isoformat())
    again = parse_timestamps(iso, day_first=not day_first, assume_tz="Asia/Tokyo")
    pd.testing.assert_series_equal(again["ts"], once.loc[parsed, "ts"])


@given(st.lists(st.datetimes(min_value=pd.Timestamp("1900-01-01").to_pydatetime(),
                             max_value=pd.Timestamp("2200-01-01").to_pydatetime()), max_size=10),
       st.booleans())
@PROPERTY
def test_every_rendering_of_a_utc_time_parses_back(stamps, day_first):
    truth = pd.Series(pd.to_datetime(stamps, utc=True), dtype="datetime64[ns, UTC]")
    seconds = truth.dt.floor("s")
    renderings = [
        (truth.map(lambda t: t.isoformat()), truth),
        (truth.map(lambda t: t.tz_convert("Europe/Berlin").isoformat()), truth),
        (truth.map(lambda t: t.strftime("%d/%m/%Y %H:%M:%S.%f Z" if day_first else "%m/%d/%Y %H:%M:%S.%f Z")),
         truth),
        (truth.map(lambda t: t.strftime("%a, %d %b %Y %H:%M:%S +0000")), seconds),
        (truth.map(lambda t: str(t.value // 10**9)), seconds),
    ]
    # Epoch milliseconds are told from seconds by size: from 1e11 ms (1973-03-03) on.
    recent = truth[truth >= pd.Timestamp(10**11, unit="ms", tz="UTC")]
    renderings.append((recent.map(lambda t: str(t.value // 10**6)), recent.dt.floor("ms")))
    for text, expected in renderings:
        got = parse_timestamps(text.astype(object), day_first=day_first)
        pd.testing.assert_series_equal(got["ts"], expected, check_names=False)


@PROPERTY
@given(columns)
def test_countries_timezones_and_lookups_are_idempotent(s):
    before = s.copy()
    countries = normalize_countries(s)
    _unchanged_and_aligned(before, s, countries)
    known = countries["country"].notna()
    pd.testing.assert_frame_equal(normalize_countries(countries.loc[known, "country"]), countries[known])
    zones = normalize_timezones(s)
    _unchanged_and_aligned(before, s, zones)
    ok = zones["timezone"].notna()
    pd.testing.assert_frame_equal(normalize_timezones(zones.loc[ok, "timezone"]), zones[ok])
    for name in ("order_statuses", "product_categories", "event_names"):
        mapped = map_lookup(s, name)
        _unchanged_and_aligned(before, s, mapped)
        hit = mapped["value"].notna()
        pd.testing.assert_frame_equal(map_lookup(mapped.loc[hit, "value"], name), mapped[hit])


@PROPERTY
@given(columns, st.sampled_from(["EUR", "JPY", "BHD", "zzz", None, "xau"]))
def test_amounts_and_units_never_raise_and_keep_the_input(s, currency):
    before = s.copy()
    cur = pd.Series(currency, index=s.index, dtype=object)
    minor = to_minor(s, cur)
    _unchanged_and_aligned(before, s, minor)
    assert (minor["amount_minor"].isna() == minor["amount_issue"].notna()).all()
    grams = to_grams(s, pd.Series("kg", index=s.index))
    _unchanged_and_aligned(before, s, grams)
    converted = convert(s, cur, s)
    _unchanged_and_aligned(before, s, converted)
    assert (converted["reporting_minor"].isna() == converted["fx_issue"].notna()).all()


def test_lone_surrogates_keep_distinct_values_apart():
    # pandas' string hash table merges these (pandas 2.3): the normalizers must not.
    raw = pd.Series(["\ud800", "x@\ud800.com", "\ud800EUR", "b"], dtype=object)
    assert clean_text(raw).tolist() == raw.tolist()
    assert normalize_countries(raw)["country_issue"].tolist() == [f"unknown: {v}" for v in raw]
