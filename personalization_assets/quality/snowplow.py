"""Map Snowplow e-commerce enriched events (atomic CSV rows) to our Segment-format tracking plan.

Returns (event, None) or (None, reason): what has no counterpart in the plan is reported, not dropped.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

PREFIX = "com_snowplowanalytics_snowplow_ecommerce_"
ACTION_COL = f"unstruct_event_{PREFIX}snowplow_ecommerce_action_1_0_0"
ACTIONS = {
    "product_view": "Product Viewed",
    "add_to_cart": "Product Added",
    "remove_from_cart": "Product Removed",
    "transaction": "Order Completed",
    "refund": "Order Refunded",
}


def _json(value):
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _first(row: dict, entity: str) -> dict:
    items = _json(row.get(f"contexts_{PREFIX}{entity}_1_0_0"))
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


def _num(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _product(p: dict) -> dict:
    out = {"product_id": p.get("id"), "sku": p.get("id"), "name": p.get("name"),
           "category": p.get("category"), "price": _num(p.get("price")), "currency": p.get("currency")}
    qty = _num(p.get("quantity"))
    if qty is not None:
        out["quantity"] = int(qty)
    return {k: v for k, v in out.items() if v is not None}


def _timestamp(row: dict) -> str | None:
    raw = row.get("derived_tstamp") or row.get("collector_tstamp")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw).astimezone(timezone.utc).isoformat()
    except ValueError:
        return raw  # left for the validator to reject


def map_snowplow(row: dict) -> tuple[dict | None, str | None]:
    action = _json(row.get(ACTION_COL))
    kind = action.get("type") if isinstance(action, dict) else None
    if kind is None:
        return None, "no snowplow_ecommerce_action payload"
    products = _json(row.get(f"contexts_{PREFIX}product_1_0_0")) or []
    props: dict = {}
    if kind == "checkout_step":
        step = _first(row, "checkout_step").get("step")
        if str(step) != "1":
            return None, f"checkout_step {step} has no tracking-plan event (only step 1 = Checkout Started)"
        name = "Checkout Started"
    elif kind in ACTIONS:
        name = ACTIONS[kind]
    else:
        return None, f"action {kind!r} has no tracking-plan event"
    if kind in ("product_view", "add_to_cart", "remove_from_cart"):
        props.update(_product(products[0]) if products else {})
    else:
        props["products"] = [_product(p) for p in products if isinstance(p, dict)]
    cart = _first(row, "cart")
    if cart.get("cart_id"):
        props["cart_id"] = cart["cart_id"]
    txn = _first(row, "transaction")
    if txn:
        props.update(order_id=txn.get("transaction_id"), revenue=_num(txn.get("revenue")),
                     currency=txn.get("currency"), shipping=_num(txn.get("shipping")))
    if kind == "refund":
        refund = _json(row.get(f"contexts_{PREFIX}refund_1_0_0")) or [{}]
        props.setdefault("order_id", (refund[0] or {}).get("transaction_id"))
    user = _first(row, "user")
    event = {
        "type": "track", "event": name, "messageId": row.get("event_id"),
        "anonymousId": row.get("domain_userid") or row.get("network_userid"),
        "userId": user.get("id") or row.get("user_id"),
        "timestamp": _timestamp(row),
        "context": {"page": {"url": row.get("page_url")}, "library": {"name": row.get("v_tracker")}},
        "properties": {k: v for k, v in props.items() if v is not None},
    }
    return {k: v for k, v in event.items() if v is not None}, None
