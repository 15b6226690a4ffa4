"""Split a request's events into accepted (enriched) and quarantined records. Pure and sync."""

from __future__ import annotations

import hashlib
from datetime import datetime

import orjson

from .enrich import BadTimestamp, enrich, iso, parse_ts
from .validate import Violation, validate
from .wire import MAX_EVENT_BYTES


def quarantine_record(raw, violations: list[Violation], received_at: datetime, endpoint: str) -> dict:
    """A quarantined event keeps its raw payload and why; its id is stable across client retries."""
    mid = raw.get("messageId") if isinstance(raw, dict) else None
    try:
        orjson.dumps(raw)
    except TypeError:  # not representable in the bus's JSON (e.g. a >64-bit int): keep its text
        raw = repr(raw)
    if not isinstance(mid, str) or not mid:
        mid = "sha256:" + hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return {
        "messageId": mid,
        "source": "events",
        "rule": violations[0].rule,
        "message": "; ".join(v.message for v in violations),
        "violations": [{"rule": v.rule, "message": v.message} for v in violations],
        "payload": raw,
        "receivedAt": iso(received_at),
        "endpoint": endpoint,
    }


def split(raw_events: list, shared: dict, received_at: datetime, endpoint: str) -> tuple[list[dict], list[dict]]:
    accepted, quarantined = [], []
    received_iso = iso(received_at)
    shared_sent = parse_ts(shared.get("sentAt"))
    for raw in raw_events:
        try:
            size = len(orjson.dumps(raw))
        except TypeError as exc:
            violations = [Violation("unserializable", f"event cannot be stored as JSON: {exc}")]
        else:
            if size > MAX_EVENT_BYTES:
                violations = [Violation("event_too_large", f"event exceeds {MAX_EVENT_BYTES} bytes")]
            else:
                violations = validate(raw)
        if not violations:
            try:
                accepted.append(enrich(raw, received_at, shared, received_iso, shared_sent))
                continue
            except BadTimestamp as exc:
                violations = [Violation(exc.field, str(exc))]
            except OverflowError as exc:  # e.g. sentAt in year 9999
                violations = [Violation("timestamp", f"cannot correct the timestamp: {exc}")]
        quarantined.append(quarantine_record(raw, violations, received_at, endpoint))
    return accepted, quarantined
