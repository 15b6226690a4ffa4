"""UCI Online Retail invoices into our staging shape (orders, order lines, customers).

The platform's normalizers (`personalization_assets/normalize/`) did not exist when this was
written; `clean_invoices` is the swap point: it applies the standard RFM cleaning (customer id
present, not a cancellation `C...`, quantity > 0) and converts money to integer minor units.
Each dropped row is counted by reason, never silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SOURCE_TZ = "Europe/London"  # InvoiceDate is naive UK local time


@dataclass
class Staged:
    orders: pd.DataFrame
    order_lines: pd.DataFrame
    customers: pd.DataFrame
    dropped: dict[str, int]


def read_invoices(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64"},
                       parse_dates=["InvoiceDate"])


def clean_invoices(raw: pd.DataFrame) -> Staged:
    no_customer = raw["CustomerID"].isna()
    cancelled = ~no_customer & raw["InvoiceNo"].str.startswith("C")
    returns = ~no_customer & ~cancelled & (raw["Quantity"] <= 0)
    keep = raw[~(no_customer | cancelled | returns)].copy()
    keep["customer_key"] = "retail:" + keep["CustomerID"].astype(str)
    created = (keep["InvoiceDate"].dt.tz_localize(SOURCE_TZ, ambiguous="NaT", nonexistent="shift_forward")
               .dt.tz_convert("UTC"))
    keep["created_at"] = created
    # Round each line to pence once; sums of the integer lines are then exact.
    keep["line_total_minor"] = np.round(keep["Quantity"] * keep["UnitPrice"] * 100).astype("int64")
    keep["unit_price_minor"] = np.round(keep["UnitPrice"] * 100).astype("int64")
    lines = pd.DataFrame({
        "order_id": keep["InvoiceNo"], "line_no": keep.groupby("InvoiceNo").cumcount() + 1,
        "sku": keep["StockCode"], "product_name": keep["Description"],
        "category": None, "quantity": keep["Quantity"].astype("int64"),
        "unit_price_minor": keep["unit_price_minor"], "line_total_minor": keep["line_total_minor"],
        "currency": "GBP"})
    orders = (keep.groupby("InvoiceNo", sort=False)
              .agg(customer_key=("customer_key", "first"), created_at=("created_at", "min"),
                   total_minor=("line_total_minor", "sum"))
              .reset_index().rename(columns={"InvoiceNo": "order_id"}))
    orders = orders.assign(customer_record_id=orders["customer_key"], email=None, status="completed",
                           currency="GBP", total_reporting_minor=orders["total_minor"], fx_rate=1.0,
                           cart_id=None).drop(columns="customer_key")
    first_country = keep.groupby("customer_key")["Country"].first()
    customers = pd.DataFrame({
        "customer_key": first_country.index, "email": None, "first_name": None, "last_name": None,
        "country": first_country.values, "timezone": SOURCE_TZ, "locale": "en-GB",
        "email_opt_in": False, "consent_processing": True,
        "created_at": pd.Timestamp("2010-12-01", tz="UTC"), "currency": "GBP"})
    dropped = {"no_customer_id": int(no_customer.sum()), "cancellation": int(cancelled.sum()),
               "non_positive_quantity": int(returns.sum()),
               "ambiguous_local_time": int(created.isna().sum())}
    return Staged(orders=orders, order_lines=lines, customers=customers, dropped=dropped)
