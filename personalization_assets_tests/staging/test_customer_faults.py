"""CRM rows -> staging.customers when the rows are bad: no key is never a customer, consent is read
explicitly, a bad birth date is flagged (not silently blanked), bidi controls never reach names."""

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from personalization_assets.sources.crm import CUSTOMER_COLUMNS
from personalization_assets.staging import stage_customers

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _customer(customer_id, **values):
    row = dict.fromkeys(CUSTOMER_COLUMNS)
    row.update(customer_id=customer_id, first_name="Ann", last_name="Lee", email=f"u{customer_id}@example.org",
               email_opt_in="true", consent_processing="true", created_at=pd.Timestamp("2026-01-01", tz="UTC"),
               updated_at=pd.Timestamp("2026-01-02", tz="UTC"))
    row.update(values)
    return row


def _stage(*rows):
    return stage_customers(pd.DataFrame(list(rows), columns=CUSTOMER_COLUMNS), now=NOW)


def test_a_row_without_key_is_quarantined_never_a_customer():
    staged = _stage(_customer(1), _customer(2), _customer(np.nan, email="a@example.org"),
                    _customer(np.nan, email="b@example.org"))
    assert staged.valid["record_id"].tolist() == ["crm:1", "crm:2"]  # not "crm:1.0" from the float column
    assert staged.valid["source_id"].tolist() == ["1", "2"]
    keyless = staged.quarantined[staged.quarantined["rule"] == "customers.source_id"]
    assert len(keyless) == 2 and keyless["record_id"].nunique() == 2  # two records, never collapsed
    assert keyless["record_id"].str.startswith("sha256:").all()
    assert _stage(_customer(np.nan, email="a@example.org")).quarantined["record_id"].tolist() == [
        keyless["record_id"].iloc[0]]  # stable across runs: a rerun adds nothing
    twins = _stage(_customer(np.nan, email="a@example.org"), _customer(np.nan, email="a@example.org")).quarantined
    assert twins["record_id"].nunique() == 2  # the same content twice is still two records


def test_consent_is_read_explicitly_and_unknown_is_never_consent():
    staged = _stage(_customer(1), _customer(2, email_opt_in="false"), _customer(3, email_opt_in=" No"),
                    _customer(4, email_opt_in=None), _customer(5, email_opt_in="maybe"),
                    _customer(6, consent_processing="2"), _customer(7, email_opt_in=True, consent_processing=1))
    valid = staged.valid.set_index("record_id")
    assert valid["email_opt_in"].to_dict() == {"crm:1": True, "crm:2": False, "crm:3": False, "crm:4": False,
                                               "crm:7": True}
    assert valid["email_opt_in"].dtype == bool and valid["consent_processing"].dtype == bool
    rules = dict(zip(staged.quarantined["record_id"], staged.quarantined["rule"]))
    assert rules == {"crm:5": "customers.email_opt_in", "crm:6": "customers.consent_processing"}
    assert "'maybe'" in staged.quarantined.set_index("record_id").loc["crm:5", "message"]


def test_bad_birth_dates_are_flagged_not_silently_blanked():
    staged = _stage(_customer(1, birth_date="1990-02-03"), _customer(2, birth_date="1990-02-30"),
                    _customer(3, birth_date="2090-01-01"), _customer(4, birth_date="1850-01-01"),
                    _customer(5, birth_date=None))
    valid = staged.valid.set_index("record_id")
    assert valid["birth_date"].to_dict() == {"crm:1": "1990-02-03", "crm:2": None, "crm:3": None, "crm:4": None,
                                             "crm:5": None}
    issues = valid["birth_date_issue"]
    assert issues["crm:1"] is None and issues["crm:5"] is None  # a valid date, and none given
    assert "1990-02-30" in issues["crm:2"] and "future" in issues["crm:3"] and "before 1900" in issues["crm:4"]
    assert valid.loc["crm:2", "birth_date_raw"] == "1990-02-30"


def test_bidi_controls_never_reach_names():
    staged = _stage(_customer(1, first_name="\u202eenna", last_name="Lee\u2066x\u2069"))
    row = staged.valid.iloc[0]
    assert (row["first_name"], row["last_name"]) == ("Enna", "Leex")
    assert row["first_name_raw"] == "\u202eenna"  # the raw original stays as sent
