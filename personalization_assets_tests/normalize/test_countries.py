from __future__ import annotations

import gzip

import pandas as pd
import pycountry

from personalization_assets.normalize import normalize_countries
from personalization_assets.normalize.countries import synonyms
from personalization_assets_tests.conftest import FIXTURES


def _online_retail_countries() -> pd.Series:
    # The slice keeps at least one customer or invoice of each of the full file's 38 countries.
    with gzip.open(FIXTURES / "online-retail" / "online_retail_slice.csv.gz", "rt", encoding="utf-8") as f:
        return pd.read_csv(f, usecols=["Country"], dtype=str)["Country"]


def test_every_online_retail_country_is_a_code_or_an_explicit_unknown():
    countries = _online_retail_countries()
    values = pd.Series(sorted(countries.unique()))
    assert len(values) == 38
    out = normalize_countries(values).set_index(values)
    assert (out["country"].notna() | out["country_issue"].notna()).all()
    assert not out["country_issue"].str.startswith("unknown:", na=False).any(), out[out["country"].isna()]
    assert out.loc[["EIRE", "RSA", "USA", "United Kingdom", "Czech Republic"], "country"].tolist() == \
        ["IE", "ZA", "US", "GB", "CZ"]
    for value in ("Channel Islands", "European Community", "Unspecified"):
        assert out.loc[value, "country"] is None
    assert "Jersey" in out.loc["Channel Islands", "country_issue"]
    # Never a wrong country: a value that is a pycountry name maps to that very country.
    for value, code in out["country"].dropna().items():
        try:
            assert pycountry.countries.lookup(value).alpha_2 == code, value
        except LookupError:
            assert value in {"EIRE", "RSA", "USA", "Czech Republic"}, value


def test_every_iso_code_and_name_maps_to_itself():
    table = pd.read_csv(FIXTURES / "iso-country-currency" / "countries.csv", dtype=str, keep_default_na=False)
    assert len(table) == 249
    for column in ("alpha_2", "alpha_3", "numeric", "name"):
        out = normalize_countries(table[column])
        assert (out["country"] == table["alpha_2"]).all(), column
    official = table[table["official_name"] != ""]
    assert (normalize_countries(official["official_name"])["country"] == official["alpha_2"]).all()


def test_synonyms_point_at_real_countries_and_unknowns_have_a_reason():
    for key, (code, reason) in synonyms().items():
        if code is None:
            assert reason, key
        else:
            assert pycountry.countries.get(alpha_2=code) is not None, key


def test_unknown_and_missing_values_carry_a_reason():
    out = normalize_countries(pd.Series(["Narnia", None, "  ", "Korea", "uk", " germany "]))
    assert out["country"].tolist() == [None, None, None, None, "GB", "DE"]
    assert out["country_issue"].tolist()[:3] == ["unknown: Narnia", "missing", "missing"]
    assert out["country_issue"][3].startswith("ambiguous")
