from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personalization_assets.normalize import clean_text, display_name, match_key, to_grams, to_millimetres


def test_clean_text_and_match_key():
    raw = pd.Series(["  Ｊｏｈｎ\u00a0\u00a0Smith\t", "", None, "Stra\u00dfe", "e\u0301"], index=list("abcde"))
    assert clean_text(raw).tolist() == ["John Smith", None, None, "Straße", "é"]
    assert match_key(raw).tolist() == ["john smith", None, None, "strasse", "é"]
    assert list(clean_text(raw).index) == list("abcde")


@pytest.mark.parametrize("raw, shown", [
    ("o'neil", "O'Neil"), ("MCDONALD", "McDonald"), ("van der berg", "Van der Berg"),
    ("anna van der berg", "Anna van der Berg"), ("jean-luc picard", "Jean-Luc Picard"),
    ("McDonald", "McDonald"), ("DeVito", "DeVito"), ("  søren ", "Søren"), ("mack", "Mack"),
])
def test_display_names(raw, shown):
    assert display_name(pd.Series([raw])).item() == shown


def test_units():
    grams = to_grams(pd.Series(["1.5", 2, "250", None, "x"]), pd.Series(["KG", "lb", " g ", "g", "g"]))
    assert grams["grams"].tolist()[:3] == [1500.0, 907.18474, 250.0]
    assert grams["unit_issue"].tolist()[3] == "missing value"
    assert grams["unit_issue"][4].startswith("not a number")
    mm = to_millimetres(pd.Series([1, 2, 3]), pd.Series(["in", "cm", "furlong"]))
    assert mm["millimetres"].tolist()[:2] == [25.4, 20.0]
    assert mm["unit_issue"][2] == "unknown unit: furlong"


def test_a_value_too_large_for_float_is_an_issue():
    out = to_grams(pd.Series(["1e308", "9e999"]), pd.Series(["kg", "g"]))
    assert out["grams"].isna().all()
    assert out["unit_issue"].tolist() == ["value out of range", "value out of range"]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(["a", "B", " ", "\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069",
                                         "\u200e", "\u200f", "\u061c", "\u202a", "\u202b", "\u202c", "\u05d0"])))
def test_bidi_controls_never_survive_in_text_or_names(text):
    bidi = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
    for fn in (clean_text, display_name, match_key):
        value = fn(pd.Series([text])).iloc[0]
        assert value is None or not bidi & set(value)
    assert clean_text(pd.Series(["\u202eevil\u202c Name"])).iloc[0] == "evil Name"
    assert clean_text(pd.Series(["\u05d0\u05d1"])).iloc[0] == "\u05d0\u05d1"  # right-to-left letters stay
