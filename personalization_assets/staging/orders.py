"""Shop orders -> `staging.orders` and `staging.order_lines`: exact minor units, a reporting-currency
amount at the rate of the order's day, looked-up statuses and categories, raw values alongside."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd

from ..normalize import (
    convert, load_lookup, map_lookup, normalize_emails, parse_timestamps, to_grams, to_millimetres, to_minor,
)
from ..quality.rules import apply_order_rules
from .common import (
    REPORTING_CURRENCY, SOURCE_FORMATS, UTC, SourceFormat, StagedOrders, concat_rejections, first_failures,
    raw_payload_of, typed, unmapped_counts, utc,
)

ORDER_DTYPES = {"is_guest": "bool", "total_minor": "int64", "total_reporting_minor": "Int64",
                "created_at": UTC, "updated_at": UTC, "loaded_at": UTC}
LINE_DTYPES = {"line_no": "int64", "quantity": "int64", "unit_price_minor": "int64", "line_total_minor": "int64",
               "weight_g": "Float64", "length_mm": "Float64", "loaded_at": UTC}
LINE_COLUMNS = ["order_id", "line_no", "sku", "product_name", "category", "category_raw", "quantity",
                "unit_price_minor", "unit_price_raw", "line_total_minor", "currency", "weight_g", "weight_raw",
                "length_mm", "length_raw", "loaded_at"]


def _measure(line: dict, name: str) -> str | None:
    """A product measure as sent ("1.2 kg"), when the line carries one."""
    value, unit = line.get(name), line.get(f"{name}_unit")
    return None if value is None else f"{value} {unit or ''}".strip()


def _lines(text) -> list | None:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, dict) for v in value) else None


def _line_frame(orders: pd.DataFrame, parsed: pd.Series) -> pd.DataFrame:
    rows = [{"order_id": o, "line_no": l.get("line_no"), "sku": l.get("sku"), "product_name": l.get("name"),
             "category_raw": l.get("category"), "quantity": l.get("quantity"), "unit_price_raw": l.get("unit_price"),
             "currency": cur, "loaded_at": loaded, "weight_raw": _measure(l, "weight"),
             "weight_value": l.get("weight"), "weight_unit": l.get("weight_unit"), "length_raw": _measure(l, "length"),
             "length_value": l.get("length"), "length_unit": l.get("length_unit")}
            for o, cur, loaded, ls in zip(orders["order_id"], orders["currency"], orders["loaded_at"], parsed)
            for l in ls]
    measures = ["weight_value", "weight_unit", "length_value", "length_unit"]
    frame = pd.DataFrame(rows, columns=[c for c in LINE_COLUMNS if c not in (
        "category", "unit_price_minor", "line_total_minor", "weight_g", "length_mm")] + measures)
    frame["weight_g"] = to_grams(frame["weight_value"], frame["weight_unit"])["grams"]
    frame["length_mm"] = to_millimetres(frame["length_value"], frame["length_unit"])["millimetres"]
    prices = to_minor(frame["unit_price_raw"], frame["currency"])
    quantity = pd.to_numeric(frame["quantity"], errors="coerce")
    frame["quantity"] = quantity.astype("Int64") if (quantity.dropna() % 1 == 0).all() else quantity
    frame["unit_price_minor"] = prices["amount_minor"]
    frame["line_total_minor"] = prices["amount_minor"] * frame["quantity"]
    frame["category"] = map_lookup(frame["category_raw"], "product_categories")["value"]
    frame["line_no"] = pd.to_numeric(frame["line_no"], errors="coerce").astype("Int64")
    frame["loaded_at"] = utc(frame["loaded_at"])
    return frame[LINE_COLUMNS]


def stage_orders(raw: pd.DataFrame, *, known_customers: pd.Series, now: datetime,
                 fmt: SourceFormat = SOURCE_FORMATS["shop"]) -> StagedOrders:
    """Every raw order ends up valid (with all its lines) or quarantined with its first failure."""
    raw = raw.reset_index(drop=True)
    ids = raw["order_id"].astype(str)
    currency = raw["currency"].map(lambda v: v.strip().upper() if isinstance(v, str) else None)
    total = to_minor(raw["total"], currency)
    created = parse_timestamps(raw["created_at"], day_first=fmt.day_first, assume_tz=fmt.assume_tz)
    updated = parse_timestamps(raw["updated_at"], day_first=fmt.day_first, assume_tz=fmt.assume_tz)
    status = map_lookup(raw["status"], "order_statuses")
    fx = convert(total["amount_minor"], currency, created["ts"], to=REPORTING_CURRENCY)
    parsed = raw["lines"].map(_lines)
    keep, parts = first_failures(raw, ids, [
        (parsed.isna(), "orders.lines_json", "lines are not a JSON list of objects"),
        (total["amount_minor"].isna(), "orders.total", "total: " + total["amount_issue"].fillna("").astype(str)),
        (created["ts"].isna(), "orders.created_at", "created_at: " + created["ts_issue"].fillna("").astype(str)),
        (status["unmapped"], "orders.status_known", "status " + raw["status"].astype(str).str.slice(0, 40)
         + f" is not in the order_statuses lookup (v{load_lookup('order_statuses').version})"),
        (fx["reporting_minor"].isna(), "orders.fx_rate", fx["fx_issue"].fillna("").astype(str)),
    ])
    customer = raw["customer_id"].map(lambda v: None if v is None or pd.isna(v) or str(v) == "" else f"crm:{v}")
    orders = pd.DataFrame({
        "order_id": ids, "customer_record_id": customer, "is_guest": customer.isna(),
        "email": normalize_emails(raw["email"])["email"], "email_raw": raw["email"],
        "status": status["value"], "status_raw": raw["status"],
        "currency": currency, "total_minor": total["amount_minor"], "total_raw": raw["total"],
        "total_reporting_minor": fx["reporting_minor"], "reporting_currency": REPORTING_CURRENCY,
        "created_at": created["ts"], "updated_at": updated["ts"].fillna(created["ts"]),
        "cart_id": raw["cart_id"], "checkout_id": raw["checkout_id"], "loaded_at": utc(raw["loaded_at"]),
    })[keep.to_numpy()]
    lines = _line_frame(orders, parsed[keep])
    known = {f"crm:{c}" for c in known_customers.astype(str)}
    ruled = apply_order_rules(orders, lines, known_customer_ids=known,
                              known_statuses=set(load_lookup("order_statuses").codes), now=now)
    valid_orders = typed(ruled.orders.reset_index(drop=True), ORDER_DTYPES)
    valid_lines = typed(ruled.lines.reset_index(drop=True), LINE_DTYPES)
    unmapped = map_lookup(lines["category_raw"], "product_categories")["unmapped"]
    return StagedOrders(valid_orders, valid_lines,
                        concat_rejections(parts + [raw_payload_of(ruled.rejections, raw, ids)]),
                        {"product_categories": unmapped_counts(lines["category_raw"], unmapped)})
