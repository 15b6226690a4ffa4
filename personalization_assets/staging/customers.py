"""CRM customers -> `staging.customers`: canonical values with their raw originals alongside."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from ..normalize import (
    clean_text, display_name, normalize_countries, normalize_emails, normalize_phones, normalize_timezones,
    parse_timestamps,
)
from ..quality.rules import apply_customer_rules
from .common import (
    SOURCE_FORMATS, UTC, SourceFormat, Staged, concat_rejections, first_failures, raw_payload_of, typed,
)

DTYPES = {"email_disposable": "bool", "email_role": "bool", "email_opt_in": "bool", "consent_processing": "bool",
          "created_at": UTC, "updated_at": UTC}


def _times(values: pd.Series, fmt: SourceFormat) -> pd.DataFrame:
    if isinstance(values.dtype, pd.DatetimeTZDtype):  # already typed by the raw load
        return pd.DataFrame({"ts": values.dt.tz_convert("UTC").astype("datetime64[ns, UTC]"),
                             "ts_issue": values.isna().map({True: "missing", False: None})})
    return parse_timestamps(values, day_first=fmt.day_first, assume_tz=fmt.assume_tz)


def stage_customers(raw: pd.DataFrame, *, now: datetime, fmt: SourceFormat = SOURCE_FORMATS["crm"]) -> Staged:
    """Every raw row ends up valid or quarantined (first failing rule), never both, never neither."""
    raw = raw.reset_index(drop=True)
    ids = "crm:" + raw["customer_id"].astype(str)
    emails = normalize_emails(raw["email"])
    created, updated = _times(raw["created_at"], fmt), _times(raw["updated_at"], fmt)
    birth = parse_timestamps(raw["birth_date"], day_first=fmt.day_first)
    countries = normalize_countries(raw["country"])
    phones = normalize_phones(raw["phone"], countries["country"])
    zones = normalize_timezones(raw["timezone"])
    has_email = raw["email"].map(lambda v: isinstance(v, str) and bool(v.strip()))
    keep, parts = first_failures(raw, ids, [
        (emails["email"].isna() & has_email, "customers.email_valid", "email is not a valid address: "
         + emails["email_issue"].fillna("").astype(str)),
        (created["ts"].isna(), "customers.created_at", "created_at: " + created["ts_issue"].fillna("").astype(str)),
    ])
    out = pd.DataFrame({
        "record_id": ids, "source": "crm", "source_id": raw["customer_id"].astype(str),
        "first_name": display_name(raw["first_name"]), "first_name_raw": raw["first_name"],
        "last_name": display_name(raw["last_name"]), "last_name_raw": raw["last_name"],
        "email": emails["email"], "email_raw": raw["email"], "email_key": emails["email_key"],
        "email_disposable": emails["email_disposable"], "email_role": emails["email_role"],
        "phone": phones["phone"], "phone_raw": raw["phone"], "phone_issue": phones["phone_issue"],
        "country": countries["country"], "country_raw": raw["country"], "country_issue": countries["country_issue"],
        "street": clean_text(raw["street"]), "city": clean_text(raw["city"]), "postcode": clean_text(raw["postcode"]),
        "birth_date": birth["ts"].dt.strftime("%Y-%m-%d").where(birth["ts"].notna(), None),
        "birth_date_raw": raw["birth_date"],
        "timezone": zones["timezone"], "timezone_raw": raw["timezone"],
        "locale": clean_text(raw["locale"]),
        "email_opt_in": raw["email_opt_in"].map(_flag), "consent_processing": raw["consent_processing"].map(_flag),
        "created_at": created["ts"], "updated_at": updated["ts"].fillna(created["ts"]),
    })[keep.to_numpy()]
    ruled = apply_customer_rules(out, now=now)
    quarantined = concat_rejections(parts + [raw_payload_of(ruled.rejections, raw, ids)])
    return Staged(typed(ruled.valid.reset_index(drop=True), DTYPES), quarantined)


def _flag(value) -> bool:
    """Consent flags as the CRM stores them (bool, 0/1, "true"/"yes"); anything else is no consent."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "t", "yes", "y", "1"}
    return bool(value) if value is not None and not pd.isna(value) else False
