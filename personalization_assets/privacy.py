"""Masking of personal data in whatever leaves the warehouse to be shown: asset previews, check
examples, logs. Dagster keeps materialization metadata forever and an erasure cannot edit it, so
what it stores must never hold an identifier in the first place.

A masked value keeps its shape for a reader (`e***@outlook.com`, `+48*******88`, `cus_a2a2…`) but
none of its identifying bytes. Columns are masked by name; every other text cell has the
addresses, phone numbers and UUIDs inside it (JSON payloads, message ids) masked in place.
"""

from __future__ import annotations

import re

import pandas as pd

EMAIL = re.compile(r"[^\s\"'<>(),;:@\\]+@[^\s\"'<>(),;:@\\]+\.[^\s\"'<>(),;:@\\]+")
PHONE = re.compile(r"\+\d[\d ().\-]{6,}\d")  # with its country code: never a date or an amount
UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
KEY = re.compile(r"\b(cus|crm|anon)[_:\-][0-9A-Za-z\-]{4,}\b")
ID_FIELD = re.compile(r'("(?:userId|user_id|customer_id|customerId|customer_key|anonymousId|anonymous_id)"\s*:\s*"?)([^",}\s]+)')

EMAIL_COLUMNS = {"email", "email_raw", "email_key"}
PHONE_COLUMNS = {"phone", "phone_raw"}
ID_COLUMNS = {"customer_key", "previous_customer_key", "record_id", "customer_record_id", "left_record_id",
              "right_record_id", "customer_id", "user_id", "anonymous_id", "identity", "row_key", "source_id",
              "ip", "national_id"}
TEXT_COLUMNS = {"first_name", "last_name", "first_name_raw", "last_name_raw", "name", "street", "postcode",
                "city", "birth_date", "birth_date_raw", "address"}


def mask_email(value: str) -> str:
    local, _, domain = value.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else "***"


def mask_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return ("+" if value.strip().startswith("+") else "") + "*" * max(len(digits) - 2, 1) + digits[-2:]


def mask_id(value: str) -> str:
    return value[:min(4, len(value) // 2)] + "…"


def mask_text(value: str) -> str:
    """Addresses, phone numbers, UUIDs and customer keys inside free text or JSON."""
    value = EMAIL.sub(lambda m: mask_email(m.group()), value)
    value = UUID.sub(lambda m: mask_id(m.group()), value)
    value = KEY.sub(lambda m: mask_id(m.group()), value)
    value = ID_FIELD.sub(lambda m: m.group(1) + mask_id(m.group(2)), value)
    return PHONE.sub(lambda m: mask_phone(m.group()) if sum(c.isdigit() for c in m.group()) >= 8 else m.group(), value)


def mask_value(column: str, value):
    """One value of `column`, masked by the column's kind (free text: what is inside it)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return value
    name, text = str(column).lower(), str(value)
    if name in EMAIL_COLUMNS:
        return mask_email(text)
    if name in PHONE_COLUMNS:
        return mask_phone(text)
    if name in ID_COLUMNS:
        return mask_id(text)
    if name in TEXT_COLUMNS:
        return text[:1] + "…" if text else text
    return mask_text(value) if isinstance(value, str) else value


def mask_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with every personal value masked (for display only)."""
    out = frame.copy()
    for column in out.columns:
        name = str(column).lower()
        if name in EMAIL_COLUMNS | PHONE_COLUMNS | ID_COLUMNS | TEXT_COLUMNS or out[column].dtype == object:
            out[column] = out[column].map(lambda v, c=column: mask_value(c, v)).astype(object)
    return out
