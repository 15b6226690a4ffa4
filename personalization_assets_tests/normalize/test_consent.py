"""Consent flags: the known spellings in any case and with any surrounding whitespace; anything else
is unknown (never consent); missing means consent not given. Checked with hypothesis."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from personalization_assets.normalize import normalize_consent
from personalization_assets.normalize.consent import FALSE_WORDS, TRUE_WORDS, consent_one

PROPERTY = settings(max_examples=200, deadline=None)
spaces = st.text(alphabet=" \t\n\r\u00a0", max_size=3)


def _any_case(word: str):
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(word, upper)))


def _spelled(words):
    return st.tuples(spaces, st.sampled_from(sorted(words)).flatmap(_any_case), spaces).map("".join)


@PROPERTY
@given(_spelled(TRUE_WORDS))
def test_every_spelling_of_yes_is_consent(text):
    assert consent_one(text) == (True, None)


@PROPERTY
@given(_spelled(FALSE_WORDS))
def test_every_spelling_of_no_is_no_consent(text):
    assert consent_one(text) == (False, None)


@PROPERTY
@given(st.text())
def test_unknown_text_is_never_consent(text):
    consent, issue = consent_one(text)
    known = text.strip().lower() in TRUE_WORDS | FALSE_WORDS
    if not known:
        assert consent is not True
        assert (consent is None and issue.startswith("not a consent flag")) or (consent is False and issue == "missing")
    if consent is True:
        assert text.strip().lower() in TRUE_WORDS


@PROPERTY
@given(st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans()))
def test_numbers_are_consent_only_when_exactly_one(value):
    consent, issue = consent_one(value)
    if value in (0, 1):  # True/False compare equal to 1/0
        assert (consent, issue) == (bool(value), None)
    else:
        assert consent is None and issue


def test_missing_means_consent_not_given():
    for value in (None, np.nan, pd.NA, "", "   "):
        assert consent_one(value) == (False, "missing")


def test_other_types_are_unknown():
    for value in (["yes"], {"true": 1}, b"yes", 1j):
        consent, issue = consent_one(value)
        assert consent is None and "not a consent flag" in issue


@PROPERTY
@given(st.lists(st.one_of(st.text(max_size=6), _spelled(TRUE_WORDS | FALSE_WORDS), st.none(), st.booleans(),
                          st.integers(-2, 2)), max_size=15))
def test_series_matches_value_by_value_and_keeps_the_input(values):
    s = pd.Series(values, dtype=object, index=[f"r{i}" for i in range(len(values))])
    before = s.copy()
    out = normalize_consent(s)
    pd.testing.assert_series_equal(s, before)
    assert list(out.index) == list(s.index)
    for value, consent, issue in zip(values, out["consent"], out["consent_issue"]):
        assert (consent, issue) == consent_one(value)
