from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from disposable_email_domains import blocklist
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from personalization_assets.normalize import normalize_emails
from personalization_assets.normalize.email import validated
from personalization_assets_tests.conftest import FIXTURES


def _library(address: str) -> tuple[str | None, str | None]:
    try:
        return validate_email(address, check_deliverability=False).normalized, None
    except EmailNotValidError as exc:
        return None, str(exc)


def test_labelled_cases_agree_with_their_labels():
    cases = pd.read_csv(FIXTURES / "email-test-cases" / "email_validator_syntax_cases.csv",
                        keep_default_na=False)
    # Cases that need options we do not enable (quoted local parts, display names, domain
    # literals) are judged by email-validator's defaults, which is what we use.
    default = cases[cases["validate_email_kwargs"] == "check_deliverability=False;allow_quoted_local=True;allow_display_name=True"]
    out = normalize_emails(cases["email_input"])
    for raw, row in zip(cases["email_input"], out.itertuples()):
        expected, issue = _library(raw.strip())
        assert row.email == (expected.lower() if expected else None), raw
        assert row.email_issue == (issue if raw.strip() else "missing"), raw
    labelled_valid = default[default["expected_valid"] == "True"]
    simple = labelled_valid[~labelled_valid["email_input"].str.contains('["<]', regex=True)]
    got = out.loc[simple.index, "email"]
    assert got.tolist() == simple["expected_normalized"].str.lower().tolist()
    invalid = cases[cases["expected_valid"] == "False"]
    assert out.loc[invalid.index, "email"].isna().all()
    assert out.loc[invalid.index, "email_issue"].notna().all()


def test_is_email_suite_errors_are_rejected_unless_only_surrounding_whitespace_was_wrong():
    tests = ET.parse(FIXTURES / "email-test-cases" / "isemail_tests.xml").getroot().iter("test")
    cases = pd.DataFrame([(t.findtext("address") or "", t.findtext("category")) for t in tests],
                         columns=["address", "category"])
    # The file writes control characters as U+2400 + n (see its header).
    cases["address"] = cases["address"].map(
        lambda s: "".join(chr(ord(c) - 0x2400) if 0x2400 <= ord(c) <= 0x241F else c for c in s))
    out = normalize_emails(cases["address"])
    errors = cases["category"] == "ISEMAIL_ERR"
    accepted = errors & out["email"].notna()
    # We trim whitespace (CR/LF included) around a field on purpose; the raw value is kept beside.
    assert (cases.loc[accepted, "address"].str.strip() != cases.loc[accepted, "address"]).all()
    assert (out.loc[accepted, "email"] == cases.loc[accepted, "address"].str.strip().str.lower()).all()
    assert errors.sum() == 66 and (errors & out["email"].isna()).sum() == 66 - accepted.sum()
    valid = cases[cases["category"] == "ISEMAIL_VALID_CATEGORY"]
    rejected = valid[out.loc[valid.index, "email"].isna()]
    assert rejected["address"].tolist() == ["test@io"]  # email-validator wants a dot in the domain


local_parts = st.one_of(st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{0,70}", fullmatch=True),
                        st.sampled_from(["Info", "POSTMASTER", "a" * 64, "a" * 250, "ö", "a b", '"q"']))
domains = st.one_of(
    st.sampled_from(["gmail.com", "Example.ORG", "bücher.de", "xn--bcher-kva.de", "localhost", "a.test",
                     "[127.0.0.1]", "mail..com", "-bad.com", "x.y", "co", "example.com.", "ex ample.com"]),
    st.from_regex(r"[a-z0-9-]{1,70}(\.[a-z0-9-]{1,70}){0,4}", fullmatch=True),
)


@settings(max_examples=200, deadline=None)
@given(local_parts, domains)
def test_fast_path_decides_exactly_as_email_validator(local, domain):
    address = f"{local}@{domain}"
    (fast, fast_issue), (library, library_issue) = validated(address), _library(address)
    assert (fast and fast.lower(), fast_issue) == (library and library.lower(), library_issue)


def test_matching_key_removes_aliases_only_where_the_provider_ignores_them():
    raw = pd.Series(["John.Doe+shop@GoogleMail.com", "johndoe@gmail.com", "j.o.h.n+x@outlook.com",
                     "john.doe+x@example.com", "first-last@yahoo.com", "+only@gmail.com"])
    keys = normalize_emails(raw)["email_key"].tolist()
    assert keys[0] == keys[1] == "johndoe@gmail.com"
    assert keys[2] == "j.o.h.n@outlook.com"  # Outlook: dots are significant, +tag is not
    assert keys[3] == "john.doe+x@example.com"  # unknown provider: nothing removed
    assert keys[4] == "first-last@yahoo.com"
    assert keys[5] == "+only@gmail.com"  # nothing left after the tag: keep the address


def test_disposable_flag_uses_the_same_list_as_the_published_one():
    # Every 50th domain of the list published with disposable-email-domains 0.0.293 (fixture SOURCE.md).
    published = set((FIXTURES / "disposable-email-domains" / "disposable_email_blocklist_slice.txt").read_text().split())
    assert len(published) == 204 and published <= set(blocklist)
    sample = sorted(published)
    flags = normalize_emails(pd.Series([f"someone@{d}" for d in sample] + [f"a@sub.{sample[0]}", "a@gmail.com"]))
    valid = flags["email"].notna()
    assert flags.loc[valid, "email_disposable"].tolist() == [True] * (valid.sum() - 1) + [False]


def test_internationalized_disposable_domains_are_flagged_in_either_spelling():
    assert "xn--5nx.cc" in blocklist  # the list spells IDNs in ASCII; email-validator gives Unicode
    out = normalize_emails(pd.Series(["a@xn--5nx.cc", "a@灵.cc", "a@sub.xn--5nx.cc"]))
    assert out["email"].tolist() == ["a@灵.cc", "a@灵.cc", "a@sub.灵.cc"]
    assert out["email_disposable"].tolist() == [True, True, True]


@pytest.mark.parametrize("address, role", [
    ("info@shop.de", True), ("NoReply@shop.de", True), ("no-reply@shop.de", True), ("postmaster@x.org", True),
    ("support+tickets@x.org", True), ("anna@shop.de", False), ("information@shop.de", False),
])
def test_role_addresses_are_flagged(address, role):
    assert normalize_emails(pd.Series([address]))["email_role"].item() is role


def test_missing_and_non_text_values_carry_a_reason():
    out = normalize_emails(pd.Series([None, float("nan"), "  ", 42, ["a@b.c"]], dtype=object))
    assert out["email"].isna().all()
    assert out["email_issue"].tolist()[:3] == ["missing"] * 3
    assert out["email_issue"].notna().all()
