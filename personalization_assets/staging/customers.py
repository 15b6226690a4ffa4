"""CRM customers -> `staging.customers`: canonical values with their raw originals alongside.

A row without a `customer_id` is never a customer (it would become "crm:<NA>"), and a consent flag
that is not one of the known spellings (`normalize.consent`) is never read as consent: both are
quarantined. A missing consent flag means consent was not given. A birth date that is not a
plausible date stays missing with its reason in `birth_date_issue`; the customer is kept."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from ..normalize import (
    clean_text, display_name, normalize_consent, normalize_countries, normalize_emails, normalize_phones,
    normalize_timezones, parse_timestamps,
)
from ..quality.rules import apply_customer_rules
from ..sources.incremental import content_ids
from .common import (
    SOURCE_FORMATS, UTC, SourceFormat, Staged, concat_rejections, first_failures, payloads, raw_payload_of, typed,
)

EARLIEST_BIRTH = pd.Timestamp("1900-01-01", tz="UTC")

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
    source_ids = raw["customer_id"].map(_source_id)
    keyless = source_ids.isna()
    ids = "crm:" + source_ids.astype(str)
    if keyless.any():  # identified by content: stable across reruns, distinct per record
        ids[keyless] = content_ids(pd.Series(payloads(raw[keyless.to_numpy()]), index=ids.index[keyless])).to_numpy()
    emails = normalize_emails(raw["email"])
    created, updated = _times(raw["created_at"], fmt), _times(raw["updated_at"], fmt)
    birth = _birth_dates(raw["birth_date"], fmt, now)
    opt_in, processing = normalize_consent(raw["email_opt_in"]), normalize_consent(raw["consent_processing"])
    countries = normalize_countries(raw["country"])
    phones = normalize_phones(raw["phone"], countries["country"])
    zones = normalize_timezones(raw["timezone"])
    has_email = raw["email"].map(lambda v: isinstance(v, str) and bool(v.strip()))
    keep, parts = first_failures(raw, ids, [
        (keyless, "customers.source_id", "customer_id is missing: a CRM row without its key is not a customer"),
        (emails["email"].isna() & has_email, "customers.email_valid", "email is not a valid address: "
         + emails["email_issue"].fillna("").astype(str)),
        (created["ts"].isna(), "customers.created_at", "created_at: " + created["ts_issue"].fillna("").astype(str)),
        (opt_in["consent"].isna(), "customers.email_opt_in",
         "email_opt_in: " + opt_in["consent_issue"].fillna("").astype(str) + " (unknown is never consent)"),
        (processing["consent"].isna(), "customers.consent_processing",
         "consent_processing: " + processing["consent_issue"].fillna("").astype(str) + " (unknown is never consent)"),
    ])
    out = pd.DataFrame({
        "record_id": ids, "source": "crm", "source_id": source_ids,
        "first_name": display_name(raw["first_name"]), "first_name_raw": raw["first_name"],
        "last_name": display_name(raw["last_name"]), "last_name_raw": raw["last_name"],
        "email": emails["email"], "email_raw": raw["email"], "email_key": emails["email_key"],
        "email_disposable": emails["email_disposable"], "email_role": emails["email_role"],
        "phone": phones["phone"], "phone_raw": raw["phone"], "phone_issue": phones["phone_issue"],
        "country": countries["country"], "country_raw": raw["country"], "country_issue": countries["country_issue"],
        "street": clean_text(raw["street"]), "city": clean_text(raw["city"]), "postcode": clean_text(raw["postcode"]),
        "birth_date": birth["ts"].dt.strftime("%Y-%m-%d").where(birth["ts"].notna(), None),
        "birth_date_raw": raw["birth_date"], "birth_date_issue": birth["ts_issue"],
        "timezone": zones["timezone"], "timezone_raw": raw["timezone"],
        "locale": clean_text(raw["locale"]),
        "email_opt_in": opt_in["consent"].eq(True),
        "consent_processing": processing["consent"].eq(True),
        "created_at": created["ts"], "updated_at": updated["ts"].fillna(created["ts"]),
    })[keep.to_numpy()]
    ruled = apply_customer_rules(out, now=now)
    quarantined = concat_rejections(parts + [raw_payload_of(ruled.rejections, raw, ids)])
    return Staged(typed(ruled.valid.reset_index(drop=True), DTYPES), quarantined)


def _source_id(value) -> str | None:
    """The CRM key as text ("42", never "42.0" from a float column); None when missing or blank."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _birth_dates(values: pd.Series, fmt: SourceFormat, now: datetime) -> pd.DataFrame:
    """Parsed birth dates; a value given but unusable (unparseable, in the future, before 1900)
    is missing with its reason in `ts_issue` (a missing value has no issue: none was given)."""
    birth = parse_timestamps(values, day_first=fmt.day_first)
    issue = birth["ts_issue"].where(birth["ts_issue"] != "missing", None)
    ts = birth["ts"]
    future, ancient = ts > pd.Timestamp(now), ts < EARLIEST_BIRTH
    issue = issue.where(~future, "birth date in the future: " + ts.astype(str))
    issue = issue.where(~ancient, "birth date before 1900: " + ts.astype(str))
    return pd.DataFrame({"ts": ts.where(~(future | ancient)), "ts_issue": issue.astype(object)})
