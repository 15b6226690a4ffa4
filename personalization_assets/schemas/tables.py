"""Pandera models of the staging tables; the Dagster column schema is derived from them
(`assets/checks.py`).

Lenient on optional nullable columns, strict on ids, tz-aware UTC timestamps, quantities and totals.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
import pycountry
from pandera.typing import Series

ISO_4217 = frozenset(c.alpha_3 for c in pycountry.currencies)
UTC_TS = pd.DatetimeTZDtype(tz="UTC")


def _iso_currency(s: pd.Series) -> pd.Series:
    return s.isna() | s.isin(ISO_4217)


class StagingCustomers(pa.DataFrameModel):
    record_id: Series[str] = pa.Field(unique=True, str_startswith="crm:")
    source: Series[str]
    source_id: Series[str]
    first_name: Series[str] = pa.Field(nullable=True)
    last_name: Series[str] = pa.Field(nullable=True)
    email: Series[str] = pa.Field(nullable=True)
    email_key: Series[str] = pa.Field(nullable=True)
    phone: Series[str] = pa.Field(nullable=True, str_matches=r"^\+[1-9]\d{6,14}$")
    country: Series[str] = pa.Field(nullable=True, str_length={"min_value": 2, "max_value": 2})
    timezone: Series[str] = pa.Field(nullable=True)
    created_at: Series[UTC_TS]
    updated_at: Series[UTC_TS]

    class Config:
        strict = False
        coerce = False


class StagingOrders(pa.DataFrameModel):
    order_id: Series[str] = pa.Field(unique=True)
    customer_record_id: Series[str] = pa.Field(nullable=True)
    is_guest: Series[bool]
    status: Series[str]
    currency: Series[str]
    total_minor: Series[int] = pa.Field(ge=0)
    created_at: Series[UTC_TS]
    updated_at: Series[UTC_TS]

    @pa.check("currency", name="iso_4217")
    def currency_iso_4217(cls, s: pd.Series) -> pd.Series:
        return _iso_currency(s)

    @pa.dataframe_check(name="guest_or_customer")
    def guest_or_customer(cls, df: pd.DataFrame) -> pd.Series:
        return df["is_guest"] | df["customer_record_id"].notna()

    class Config:
        strict = False


class StagingOrderLines(pa.DataFrameModel):
    order_id: Series[str]
    line_no: Series[int] = pa.Field(ge=1)
    sku: Series[str]
    product_name: Series[str] = pa.Field(nullable=True)
    category: Series[str] = pa.Field(nullable=True)
    quantity: Series[int] = pa.Field(gt=0)
    unit_price_minor: Series[int] = pa.Field(ge=0)
    line_total_minor: Series[int] = pa.Field(ge=0)
    currency: Series[str]

    @pa.check("currency", name="iso_4217")
    def currency_iso_4217(cls, s: pd.Series) -> pd.Series:
        return _iso_currency(s)

    class Config:
        strict = False
        unique = ["order_id", "line_no"]


class StagingEvents(pa.DataFrameModel):
    message_id: Series[str] = pa.Field(unique=True)
    type: Series[str] = pa.Field(isin=["track", "identify", "page", "screen", "group", "alias"])
    event: Series[str] = pa.Field(nullable=True)
    user_id: Series[str] = pa.Field(nullable=True)
    anonymous_id: Series[str] = pa.Field(nullable=True)
    timestamp: Series[UTC_TS]
    received_at: Series[UTC_TS]
    currency: Series[str] = pa.Field(nullable=True)
    value_minor: Series[float] = pa.Field(nullable=True, ge=0, coerce=True)

    @pa.check("currency", name="iso_4217")
    def currency_iso_4217(cls, s: pd.Series) -> pd.Series:
        return _iso_currency(s)

    @pa.dataframe_check(name="user_or_anonymous_id")
    def user_or_anonymous(cls, df: pd.DataFrame) -> pd.Series:
        return df["user_id"].notna() | df["anonymous_id"].notna()

    class Config:
        strict = False


STAGING_MODELS = {
    "customers": StagingCustomers,
    "orders": StagingOrders,
    "order_lines": StagingOrderLines,
    "events": StagingEvents,
}
