"""Event validation against the tracking plan. Never raises: every input is valid or has violations.

Validators are compiled once per schema; the hot path is one dict lookup plus jsonschema's
iter_errors, so the collector can call it per event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import jsonschema

from personalization_assets.quality.fastpath import Unsupported, compile_schema
from personalization_assets.schemas.registry import load_schemas

CLOCK_SKEW = timedelta(minutes=5)
MAX_VIOLATIONS = 20

TRACK_SCHEMAS = {
    "Product Viewed": "product_viewed",
    "Product Added": "product_added",
    "Product Removed": "product_removed",
    "Cart Viewed": "cart_viewed",
    "Checkout Started": "checkout_started",
    "Order Completed": "order_completed",
    "Order Updated": "order_updated",
    "Order Refunded": "order_refunded",
}
CALL_SCHEMAS = {"identify": "identify", "page": "page"}


@dataclass(frozen=True)
class Violation:
    rule: str  # "<schema name>:<JSON path>" or a named rule
    message: str


@lru_cache(maxsize=1)
def _validators() -> dict[str, object]:
    out = {}
    for name, doc in load_schemas().items():
        cls = jsonschema.validators.validator_for(doc)
        cls.check_schema(doc)
        out[name] = cls(doc)
    return out


def _never(_doc) -> bool:
    return False


@lru_cache(maxsize=1)
def _fast() -> dict[str, object]:
    """Compiled accept-checks; a schema they cannot express always goes to jsonschema."""
    out = {}
    for name, doc in load_schemas().items():
        try:
            out[name] = compile_schema(doc)
        except Unsupported:
            out[name] = _never
    return out


def schema_name(event: dict) -> str:
    kind = event.get("type")
    if kind == "track":
        name = event.get("event")
        return TRACK_SCHEMAS.get(name, "common") if isinstance(name, str) else "common"
    return CALL_SCHEMAS.get(kind, "common") if isinstance(kind, str) else "common"


def _decode(payload) -> tuple[dict | None, Violation | None]:
    if isinstance(payload, dict):
        return payload, None
    if isinstance(payload, (bytes, bytearray, memoryview)):
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, Violation("payload:encoding", f"not UTF-8: {exc.reason} at byte {exc.start}")
    if not isinstance(payload, str):
        return None, Violation("payload:type", f"expected a JSON object, got {type(payload).__name__}")
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        return None, Violation("payload:json", f"invalid JSON: {str(exc)[:200]}")
    if not isinstance(doc, dict):
        return None, Violation("payload:type", f"expected a JSON object, got {type(doc).__name__}")
    return doc, None


def _parse(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _timestamp_violation(name: str, event: dict, now: datetime | None) -> Violation | None:
    """Reject unparseable, naive or future timestamps of server-stamped events.

    Raw client events (no receivedAt, no explicit `now`) are left to the collector, which parses and
    skew-corrects them from sentAt. Otherwise "future" is measured against receivedAt, then the
    client's own sentAt, then `now`.
    """
    received = _parse(event.get("receivedAt"))
    if received is not None and received.tzinfo is not None:
        now = received
    elif now is None:
        return None
    value = event.get("timestamp")
    if not isinstance(value, str):
        return None  # absent: the collector stamps it; a wrong type is the schema's
    ts = _parse(value)
    if ts is None:
        return Violation(f"{name}:$.timestamp", f"not an ISO 8601 timestamp: {value[:64]!r}")
    if ts.tzinfo is None:
        return Violation(f"{name}:$.timestamp", "timestamp has no UTC offset")
    sent = _parse(event.get("sentAt"))
    reference = sent if sent is not None and sent.tzinfo is not None and received is None else now
    if ts - reference > CLOCK_SKEW:
        return Violation(f"{name}:$.timestamp", f"timestamp {value[:64]} is in the future beyond {CLOCK_SKEW}")
    return None


def _path(error) -> str:
    parts = ["$"]
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else f".{p}")
    return "".join(parts)


def _check(payload, now: datetime | None) -> tuple[dict | None, list[Violation]]:
    doc, problem = _decode(payload)
    if problem is not None:
        return None, [problem]
    name = schema_name(doc)
    violations = []
    if _fast()[name](doc):
        ts = _timestamp_violation(name, doc, now)
        return (doc, []) if ts is None else (None, [ts])
    for error in _validators()[name].iter_errors(doc):
        violations.append(Violation(f"{name}:{_path(error)}", str(error.message)[:300]))
        if len(violations) >= MAX_VIOLATIONS:
            break
    ts = _timestamp_violation(name, doc, now)
    if ts is not None:
        violations.append(ts)
    return (None, violations) if violations else (doc, [])


def validate_event(payload, now: datetime | None = None) -> tuple[dict | None, list[Violation]]:
    """(event, []) when valid, else (None, violations). Accepts dict, str or bytes; never raises.

    Pass `now` to check the timestamps of raw client events too (see _timestamp_violation).
    """
    try:
        return _check(payload, now)
    except RecursionError:
        return None, [Violation("payload:depth", "payload nested too deeply")]
    except Exception as exc:  # a validator bug must quarantine, not crash the caller
        return None, [Violation("validator_error", f"{type(exc).__name__}: {str(exc)[:200]}")]
