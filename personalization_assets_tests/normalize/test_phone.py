from __future__ import annotations

import pandas as pd
import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from personalization_assets.normalize import normalize_phones
from personalization_assets.normalize.phone import _international, _national, valid_in_region
from personalization_assets_tests.conftest import FIXTURES


def _examples() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "phone-examples" / "phonenumbers_examples.csv", dtype=str,
                       keep_default_na=False)  # "NA" is Namibia


def test_every_format_of_every_example_number_gives_the_same_e164():
    ph = _examples()
    assert ph["region"].nunique() == 245
    for fmt in ("e164", "international", "national", "rfc3966"):
        out = normalize_phones(ph[fmt], ph["region"])
        wrong = ph.loc[out["phone"] != ph["e164"], ["region", fmt, "e164"]]
        assert wrong.empty, f"{fmt}: {wrong.head().to_dict('records')}"
        assert out["phone_issue"].isna().all()


def test_a_number_written_internationally_ignores_the_default_region():
    ph = _examples().drop_duplicates("region")
    elsewhere = pd.Series("DE" if r != "DE" else "FR" for r in ph["region"]).set_axis(ph.index)
    out = normalize_phones(ph["international"], elsewhere)
    assert (out["phone"] == ph["e164"]).all()


def test_reasons_for_numbers_that_cannot_be_used():
    raw = pd.Series(["", None, "call me", "030 12", "0301234567", "+1 201 555 0123", "+44 20 7946 0958"])
    region = pd.Series([None, "DE", "DE", "DE", None, "DE", "US"])
    out = normalize_phones(raw, region)
    assert out["phone_issue"].tolist()[:2] == ["missing", "missing"]
    assert out["phone_issue"][2].startswith("unparseable:")
    assert out["phone_issue"][3] == "not a valid number for region DE"
    assert out["phone_issue"][4].startswith("unparseable:")  # national digits and no region
    assert out["phone"][5] == "+12015550123"
    assert out["phone"][6] == "+442079460958"
    assert (out["phone"].isna() == out["phone_issue"].notna()).all()


def test_a_valid_number_of_a_neighbouring_region_is_still_valid():
    toronto = phonenumbers.format_number(phonenumbers.example_number_for_type("CA", phonenumbers.PhoneNumberType.FIXED_LINE),
                                         phonenumbers.PhoneNumberFormat.NATIONAL)
    out = normalize_phones(pd.Series([toronto]), pd.Series(["US"]))
    assert out["phone"].item().startswith("+1") and out["phone_issue"].item() is None


def _number(region: str, nsn: str) -> phonenumbers.PhoneNumber:
    zeros = len(nsn) - len(nsn.lstrip("0"))
    return phonenumbers.PhoneNumber(country_code=phonenumbers.country_code_for_region(region),
                                    national_number=int(nsn), italian_leading_zero=zeros > 0 or None,
                                    number_of_leading_zeros=zeros if zeros > 1 else None)


def test_the_compiled_region_check_agrees_with_phonenumbers_on_every_example():
    ph = _examples()
    for region, e164 in zip(ph["region"], ph["e164"]):
        number = phonenumbers.parse(e164)
        nsn = phonenumbers.national_significant_number(number)
        for other in {region, "US", "GB", "DE"}:
            if phonenumbers.country_code_for_region(other) == number.country_code:
                assert valid_in_region(other)(nsn) == phonenumbers.is_valid_number_for_region(number, other), (other, e164)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)), st.from_regex(r"[0-9]{2,17}", fullmatch=True))
def test_the_compiled_region_check_agrees_with_phonenumbers_on_any_digits(region, nsn):
    number = _number(region, nsn.lstrip("0") or "1")
    nsn = phonenumbers.national_significant_number(number)
    assert valid_in_region(region)(nsn) == phonenumbers.is_valid_number_for_region(number, region)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)), st.integers(2, 6))
def test_the_compiled_region_check_agrees_near_real_numbers(region, tail):
    # Random digits rarely hit a valid range; vary the tail of a real example number instead.
    example = phonenumbers.example_number(region)
    if example is None:
        return
    nsn = phonenumbers.national_significant_number(example)
    for variant in (nsn[:-tail] + "0" * tail, nsn[:-tail] + "9" * tail, nsn + "1", nsn[:-1]):
        if variant.strip("0"):
            number = _number(region, variant)
            assert phonenumbers.national_significant_number(number) == variant
            assert valid_in_region(region)(variant) == phonenumbers.is_valid_number_for_region(number, region)


def _library(text: str, default: str | None) -> str | None:
    try:
        number = phonenumbers.parse(text, default)
    except phonenumbers.NumberParseException:
        return None
    valid = (default is not None and phonenumbers.is_valid_number_for_region(number, default)) \
        or phonenumbers.is_valid_number(number)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if valid else None


def test_the_international_fast_path_agrees_with_phonenumbers_on_every_example():
    ph = _examples()
    used = 0
    for region, text in zip(ph["region"], pd.concat([ph["e164"], ph["international"]])):
        for default in (region, "GB", None):
            fast = _international(text, default)
            if fast is not None:
                used += 1
                assert fast == _library(text, default), (text, default)
    assert used > 1000  # the fast path is taken for most of them


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"\+[0-9][0-9 -]{1,20}", fullmatch=True),
       st.sampled_from(["GB", "GG", "US", "CA", "DE", "IT", "AR", "RU", "KZ", "MX", "BR", "IN", None]))
def test_the_international_fast_path_agrees_with_phonenumbers_on_any_digits(text, default):
    fast = _international(text, default)
    assert fast is None or fast == _library(text, default)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)), st.integers(0, 999), st.booleans())
def test_the_international_fast_path_agrees_near_real_numbers(region, tail, spaced):
    example = phonenumbers.example_number(region)
    if example is None:
        return
    text = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL if spaced
                                      else phonenumbers.PhoneNumberFormat.E164)
    text = text[:-3] + f"{tail:03d}"
    fast = _international(text, region)
    assert fast is None or fast == _library(text, region)


def test_the_national_fast_path_agrees_with_phonenumbers_on_every_example():
    ph = _examples()
    used = 0
    for region, text in zip(ph["region"], ph["national"]):
        fast = _national(text, region)
        if fast is not None:
            used += 1
            assert fast == _library(text, region), (text, region)
    assert used > 600


national_regions = ["GB", "DE", "FR", "SE", "PL", "US", "IE", "DK", "CH", "IT", "AR", "MX", "BR", "RU",
                    "KZ", "IN", "AU", "JP", "NL", "BE", "AT", "ES", "NO", "FI", "HU", "CN", "GG", "CA"]


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[0-9(][0-9 ().-]{1,18}[0-9]", fullmatch=True), st.sampled_from(national_regions))
def test_the_national_fast_path_agrees_with_phonenumbers_on_any_digits(text, default):
    fast = _national(text, default)
    assert fast is None or fast == _library(text, default)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)), st.integers(0, 9999), st.integers(1, 4),
       st.sampled_from(["", "0", "00", "1", "8"]))
def test_the_national_fast_path_agrees_near_real_numbers(region, tail, size, lead):
    example = phonenumbers.example_number(region)
    if example is None:
        return
    text = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    for start in digits[-size:][:1]:
        text = lead + text[:start] + f"{tail:04d}"[-size:] + text[start + size:]
    fast = _national(text, region)
    assert fast is None or fast == _library(text, region)
