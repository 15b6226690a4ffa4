"""Labelled real-world field values through the quality gate: emails (email-validator's own test
vectors and is_email's suite) through the customers rules, libphonenumber's example numbers through
the staging model's phone check."""

import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import pandas as pd
import phonenumbers

from personalization_assets.quality.checks import run_model
from personalization_assets.quality.rules import apply_customer_rules
from personalization_assets.schemas.tables import StagingCustomers
from personalization_assets_tests.conftest import FIXTURES

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
OUR_OPTIONS = "check_deliverability=False"  # syntax only, library defaults otherwise


def rejected_emails(addresses: pd.Series) -> pd.Series:
    """Per address: did the customers rules quarantine it as an invalid email?"""
    frame = pd.DataFrame({"record_id": [f"crm:{i}" for i in range(len(addresses))], "email": addresses.to_numpy(),
                          "created_at": pd.Timestamp(NOW)})
    result = apply_customer_rules(frame, now=NOW)
    assert len(result.valid) + len(result.rejections) == len(frame)
    bad = set(result.rejections.loc[result.rejections["rule"] == "customers.email_valid", "record_id"])
    return pd.Series([rid in bad for rid in frame["record_id"]], index=addresses.index)


def test_email_validator_vectors_decide_the_customers_rule():
    cases = pd.read_csv(FIXTURES / "email-test-cases" / "email_validator_syntax_cases.csv", keep_default_na=False)
    cases = cases[cases["email_input"].str.strip() != ""]  # blank is the required rule's, tested elsewhere
    rejected = rejected_emails(cases["email_input"])
    ours = cases["validate_email_kwargs"] == OUR_OPTIONS
    assert ours.sum() > 50
    expected_invalid = cases["expected_valid"].astype(str) == "False"
    pd.testing.assert_series_equal(rejected[ours], expected_invalid[ours], check_names=False)
    # cases labelled invalid under more permissive options are invalid under ours too
    assert rejected[expected_invalid].all()


def control_chars(text: str) -> str:
    """The suite writes control characters as U+2400+n (its header note): decode them."""
    return "".join(chr(ord(c) - 0x2400) if 0x2400 <= ord(c) <= 0x241F else c for c in text)


def test_is_email_errors_are_all_quarantined():
    tests = ET.parse(FIXTURES / "email-test-cases" / "isemail_tests.xml").getroot().iter("test")
    errors = pd.Series([control_chars(t.findtext("address") or "") for t in tests
                        if t.findtext("category") == "ISEMAIL_ERR"])
    errors = errors[errors.str.strip() != ""]
    assert len(errors) > 50
    assert rejected_emails(errors).all()


def customers_with_phones(phones: pd.Series) -> pd.DataFrame:
    n = len(phones)
    return pd.DataFrame({
        "record_id": [f"crm:{i}" for i in range(n)], "source": "crm", "source_id": [str(i) for i in range(n)],
        "first_name": "A", "last_name": "B", "email": "a@example.com", "email_key": "a@example.com",
        "phone": phones.to_numpy(), "country": "DE", "timezone": "Europe/Berlin",
        "created_at": pd.Timestamp(NOW), "updated_at": pd.Timestamp(NOW)})


def test_example_numbers_parse_to_e164_that_the_staging_model_accepts():
    examples = pd.read_csv(FIXTURES / "phone-examples" / "phonenumbers_examples.csv", dtype=str, keep_default_na=False)
    parsed = examples["rfc3966"].map(lambda text: phonenumbers.format_number(
        phonenumbers.parse(text.removeprefix("tel:"), None), phonenumbers.PhoneNumberFormat.E164))
    assert (parsed == examples["e164"]).all()
    # The model wants 7-15 digits; shorter example numbers exist only for service numbers (IR's
    # UAN +989601), which a customer's phone is not.
    short = parsed.str.len() < 8
    assert set(examples.loc[short, "number_type"]) <= {"UAN"}
    assert run_model(StagingCustomers, customers_with_phones(parsed[~short])) == []
    failures = run_model(StagingCustomers, customers_with_phones(examples["national"]))
    phone_failures = sum(f["count"] for f in failures if f["column"] == "phone")
    assert phone_failures == (~examples["national"].str.fullmatch(r"\+[1-9]\d{6,14}")).sum() > 1000
