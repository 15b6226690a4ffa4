"""How a raw table becomes a staging table: normalize to the canonical form, then validate.

Plain Python over DataFrames. Every input row ends up either in `valid` or in `quarantined`
(with its rule and message), never both and never neither.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

QUARANTINE_INPUT = ["record_id", "raw_payload", "rule", "message"]
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class Staged:
    valid: pd.DataFrame
    quarantined: pd.DataFrame


@dataclass
class StagedOrders:
    orders: pd.DataFrame
    lines: pd.DataFrame
    quarantined: pd.DataFrame


def _reject(frame: pd.DataFrame, mask: pd.Series, ids: pd.Series, rule: str, message: str) -> pd.DataFrame:
    rows = frame[mask]
    return pd.DataFrame({
        "record_id": ids[mask].astype(str).values,
        "raw_payload": [json.dumps(r, default=str) for r in rows.to_dict("records")],
        "rule": rule,
        "message": message,
    }, columns=QUARANTINE_INPUT)


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(columns=QUARANTINE_INPUT)


def stage_customers(raw: pd.DataFrame, *, now: datetime) -> Staged:
    frame = raw.copy()
    ids = "crm:" + frame["customer_id"].astype(str)
    email = frame["email"].fillna("").str.strip().str.lower()
    bad_email = ~email.str.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    quarantined = _reject(frame, bad_email, ids, "customers.email", "email is missing or not an address")
    keep = ~bad_email
    out = pd.DataFrame({
        "record_id": ids[keep].values,
        "source": "crm",
        "source_id": frame.loc[keep, "customer_id"].astype(str).values,
        "first_name_raw": frame.loc[keep, "first_name"].values,
        "first_name": frame.loc[keep, "first_name"].fillna("").str.strip().str.title().values,
        "last_name_raw": frame.loc[keep, "last_name"].values,
        "last_name": frame.loc[keep, "last_name"].fillna("").str.strip().str.title().values,
        "email_raw": frame.loc[keep, "email"].values,
        "email": email[keep].values,
        "email_key": email[keep].values,
        "phone_raw": frame.loc[keep, "phone"].values,
        "country_raw": frame.loc[keep, "country"].values,
        "street": frame.loc[keep, "street"].values,
        "city": frame.loc[keep, "city"].values,
        "postcode": frame.loc[keep, "postcode"].values,
        "birth_date": frame.loc[keep, "birth_date"].values,
        "timezone": frame.loc[keep, "timezone"].values,
        "locale": frame.loc[keep, "locale"].values,
        "email_opt_in": frame.loc[keep, "email_opt_in"].astype(bool).values,
        "consent_processing": frame.loc[keep, "consent_processing"].astype(bool).values,
        "created_at": pd.to_datetime(frame.loc[keep, "created_at"], utc=True).values,
        "updated_at": pd.to_datetime(frame.loc[keep, "updated_at"], utc=True).values,
    })
    for c in ("created_at", "updated_at"):
        out[c] = pd.to_datetime(out[c], utc=True)
    countries = {v: _country(v) for v in out["country_raw"].dropna().unique()}
    out["country"] = out["country_raw"].map(countries)
    phones = {(p, c): _phone(p, c) for p, c in set(zip(out["phone_raw"], out["country"]))}
    parsed = [phones[(p, c)] for p, c in zip(out["phone_raw"], out["country"])]
    out["phone"] = [p for p, _ in parsed]
    out["phone_issue"] = [i for _, i in parsed]
    return Staged(out, quarantined)


def stage_orders(raw: pd.DataFrame, *, known_customers: pd.Series, now: datetime) -> StagedOrders:
    frame = raw.copy()
    ids = frame["order_id"].astype(str)
    total = pd.to_numeric(frame["total"], errors="coerce")
    problems = [
        (total.isna() | (total < 0), "orders.total_non_negative", "total is missing or negative"),
        (~frame["currency"].isin(["EUR", "GBP", "USD", "SEK", "DKK", "PLN", "CHF"]),
         "orders.currency_iso4217", "currency is not a known ISO 4217 code"),
    ]
    rejected = pd.Series(False, index=frame.index)
    parts = []
    for mask, rule, message in problems:
        mask = mask & ~rejected
        parts.append(_reject(frame, mask, ids, rule, message))
        rejected |= mask
    good = frame[~rejected]
    known = set(known_customers.astype(str))
    orders = pd.DataFrame({
        "order_id": good["order_id"].astype(str).values,
        "customer_record_id": ["crm:" + c if c in known else None for c in good["customer_id"].fillna("")],
        "is_guest": (~good["customer_id"].fillna("").isin(known)).values,
        "email": good["email"].fillna("").str.lower().values,
        "status": good["status"].values,
        "currency": good["currency"].values,
        "total_minor": (total[~rejected] * 100).round().astype("int64").values,
        "created_at": pd.to_datetime(good["created_at"], utc=True, format="ISO8601").values,
        "updated_at": pd.to_datetime(good["updated_at"], utc=True, format="ISO8601").values,
        "cart_id": good["cart_id"].values,
        "checkout_id": good["checkout_id"].values,
        "loaded_at": pd.to_datetime(good["loaded_at"], utc=True).values,
    })
    for c in ("created_at", "updated_at", "loaded_at"):
        orders[c] = pd.to_datetime(orders[c], utc=True)
    lines = [
        {"order_id": str(o), "line_no": int(l["line_no"]), "sku": l["sku"], "product_name": l["name"],
         "category": l["category"], "quantity": int(l["quantity"]),
         "unit_price_minor": int(round(float(l["unit_price"]) * 100)),
         "line_total_minor": int(round(float(l["unit_price"]) * 100)) * int(l["quantity"]), "currency": cur,
         "loaded_at": loaded}
        for o, cur, ls, loaded in zip(good["order_id"], good["currency"], good["lines"], orders["loaded_at"])
        for l in json.loads(ls)
    ]
    lines_df = pd.DataFrame(lines, columns=["order_id", "line_no", "sku", "product_name", "category",
                                            "quantity", "unit_price_minor", "line_total_minor", "currency",
                                            "loaded_at"])
    lines_df["loaded_at"] = pd.to_datetime(lines_df["loaded_at"], utc=True)
    quarantined = pd.concat(parts, ignore_index=True) if parts else _empty_quarantine()
    return StagedOrders(orders, lines_df, quarantined)


def _minor(value) -> float | None:
    try:
        return None if value is None else round(float(value) * 100)
    except (TypeError, ValueError):
        return None


def stage_events(raw: pd.DataFrame, *, now: datetime) -> Staged:
    frame = raw.drop_duplicates(subset=["message_id"], keep="first")
    payloads = [json.loads(p) for p in frame["payload"]]
    ids = frame["message_id"].astype(str).reset_index(drop=True)
    frame = frame.reset_index(drop=True)
    ts = pd.to_datetime(pd.Series([p.get("timestamp") for p in payloads]), utc=True, errors="coerce", format="ISO8601")
    no_identity = pd.Series([not (p.get("userId") or p.get("anonymousId")) for p in payloads])
    future = ts > pd.Timestamp(now) + CLOCK_SKEW
    bad_ts = ts.isna()
    rejected = pd.Series(False, index=frame.index)
    parts = []
    for mask, rule, message in [
        (no_identity, "events.identity", "neither userId nor anonymousId"),
        (bad_ts, "events.timestamp", "timestamp missing or unparseable"),
        (future, "events.timestamp_future", "timestamp in the future beyond clock skew"),
    ]:
        mask = mask & ~rejected
        parts.append(_reject(frame, mask, ids, rule, message))
        rejected |= mask
    keep = ~rejected
    rows = []
    for p, t, r in zip([p for p, k in zip(payloads, keep) if k], ts[keep], frame.loc[keep, "received_at"]):
        props = p.get("properties") or {}
        rows.append({
            "message_id": p["messageId"], "type": p.get("type"), "event": (p.get("event") or "").lower() or None,
            "user_id": p.get("userId"), "anonymous_id": p.get("anonymousId"), "timestamp": t,
            "received_at": r, "cart_id": props.get("cart_id"), "checkout_id": props.get("checkout_id"),
            "order_id": props.get("order_id"), "sku": props.get("sku"), "category": props.get("category"),
            "currency": props.get("currency"),
            "value_minor": _minor(props.get("revenue", props.get("value", props.get("price")))),
            "properties": json.dumps(props), "context": json.dumps(p.get("context") or {}),
        })
    out = pd.DataFrame(rows, columns=["message_id", "type", "event", "user_id", "anonymous_id", "timestamp",
                                      "received_at", "cart_id", "checkout_id", "order_id", "sku", "category",
                                      "currency", "value_minor", "properties", "context"])
    for c in ("timestamp", "received_at"):
        out[c] = pd.to_datetime(out[c], utc=True)
    return Staged(out, pd.concat(parts, ignore_index=True))


def schema_metadata(table: str, frame: pd.DataFrame) -> dict:
    """The UI column schema, derived from the table's Pandera model (written once, in schemas/)."""
    from ..schemas.tables import STAGING_MODELS, table_schema

    return {"dagster/column_schema": table_schema(STAGING_MODELS[table])}


COUNTRY_SYNONYMS = {"eire": "IE", "rsa": "ZA", "uk": "GB", "usa": "US", "deutschland": "DE"}


def _country(raw) -> str | None:
    """ISO 3166-1 alpha-2 via pycountry; unknown stays None rather than a guess."""
    import pycountry

    if not isinstance(raw, str) or not raw.strip():
        return None
    text = raw.strip()
    if text.lower() in COUNTRY_SYNONYMS:
        return COUNTRY_SYNONYMS[text.lower()]
    try:
        return pycountry.countries.lookup(text).alpha_2
    except LookupError:
        return None


def _phone(raw, region) -> tuple[str | None, str | None]:
    """E.164 via phonenumbers with the customer's country as default region, or a reason."""
    import phonenumbers

    if not isinstance(raw, str) or not raw.strip():
        return None, "missing"
    try:
        number = phonenumbers.parse(raw, region if isinstance(region, str) else None)
    except phonenumbers.NumberParseException as exc:
        return None, f"unparseable: {exc}"
    if not phonenumbers.is_valid_number(number):
        return None, "not a valid number"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None
