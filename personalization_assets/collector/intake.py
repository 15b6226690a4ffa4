"""Split a request's events into accepted (enriched) and quarantined records. Pure and sync.

Nothing about one event can fail the request: every per-event problem, even an unexpected one,
becomes a quarantine record with its reason. Batch-level fields that cannot be used are left out
with a reason (`usable_shared`), and the events are taken without them.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

import orjson

from .deepjson import TooDeep
from .enrich import BadTimestamp, enrich, iso, parse_ts
from .validate import Violation, validate
from .wire import MAX_EVENT_BYTES

log = logging.getLogger(__name__)
STORABLE_DEPTH = 200  # orjson writes at most 255 levels; deeper parts of a quarantined payload are cut
_CUT = f"<cut: nested deeper than {STORABLE_DEPTH} levels>"
_INT64 = (-(2**63), 2**64 - 1)  # orjson stores int64 and uint64


def storable(value, depth: int = 0):
    """A JSON-storable copy of `value` for the quarantine: over-deep parts become a marker string,
    integers beyond 64 bits their decimal text, anything else that JSON cannot hold its type name."""
    if isinstance(value, dict):
        if depth >= STORABLE_DEPTH:
            return _CUT
        return {storable(str(k)): storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if depth >= STORABLE_DEPTH:
            return _CUT
        return [storable(v, depth + 1) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates as \\udXXX text
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, TooDeep):  # a part nested past the parser's limit (deepjson.py)
        return _CUT
    return f"<{type(value).__name__}>"


def unstorable_violation(exc: TypeError) -> Violation:
    """Why orjson could not write the event, as a rule from the fixed vocabulary."""
    text = str(exc)
    if "Recursion limit" in text or "TooDeep" in text:
        return Violation("too_deep", f"event is nested more than 255 levels; it cannot be stored as JSON")
    if "64-bit" in text:
        return Violation("integer_out_of_range", "event holds an integer beyond 64 bits, which would "
                         "lose precision; send it as a string")
    if "surrogates" in text:
        return Violation("invalid_text", "event holds a string with a lone UTF-16 surrogate (text cut "
                         "mid-character), which is not valid Unicode")
    return Violation("unserializable", f"event cannot be stored as JSON: {text[:200]}")


def quarantine_record(raw, violations: list[Violation], received_at: datetime, endpoint: str) -> dict:
    """A quarantined event keeps its raw payload and why; its id is stable across client retries.
    Never raises: a payload JSON cannot hold is stored as `storable(raw)`."""
    mid = raw.get("messageId") if isinstance(raw, dict) else None
    try:
        text = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # too deep, or an integer beyond 64 bits
        raw = storable(raw)
        text = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    if not isinstance(mid, str) or not mid:
        mid = "sha256:" + hashlib.sha256(text).hexdigest()
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


def usable_shared(shared: dict) -> tuple[dict, dict[str, str]]:
    """The batch-level fields that can apply to every event, and why any other one is ignored."""
    out, ignored = {}, {}
    sent = shared.get("sentAt")
    if sent is not None:
        if parse_ts(sent) is None:
            ignored["sentAt"] = (f"batch sentAt {str(sent)[:64]!r} is not an ISO-8601 time within the "
                                 "datetime range; event times were taken without clock-skew correction")
        else:
            out["sentAt"] = sent
    ctx = shared.get("context")
    if ctx is not None:
        try:
            ok = isinstance(ctx, dict) and len(orjson.dumps(ctx)) <= MAX_EVENT_BYTES // 2
        except TypeError:
            ok = False
        if ok:
            out["context"] = ctx
        else:
            ignored["context"] = "batch context must be a JSON object under 16 KiB, nested under 255 levels"
    return out, ignored


def _violations(raw) -> list[Violation]:
    try:
        size = len(orjson.dumps(raw))
    except TypeError as exc:
        return [unstorable_violation(exc)]
    if size > MAX_EVENT_BYTES:
        return [Violation("event_too_large", f"event exceeds {MAX_EVENT_BYTES} bytes")]
    return validate(raw)


def split(raw_events: list, shared: dict, received_at: datetime, endpoint: str) -> tuple[list[dict], list[dict]]:
    accepted, quarantined = [], []
    received_iso = iso(received_at)
    shared, _ = usable_shared(shared)
    shared_sent = parse_ts(shared.get("sentAt"))
    for raw in raw_events:
        try:
            violations = _violations(raw)
            if not violations:
                accepted.append(enrich(raw, received_at, shared, received_iso, shared_sent))
                continue
        except BadTimestamp as exc:
            violations = [Violation(exc.field, str(exc))]
        except OverflowError as exc:  # e.g. sentAt in year 9999
            violations = [Violation("timestamp", f"cannot correct the timestamp: {exc}")]
        except Exception:  # a bug must cost this event (kept in quarantine), never the batch
            log.exception("unexpected error on one event of %s", endpoint)
            violations = [Violation("internal_error", "the collector could not process this event")]
        quarantined.append(quarantine_record(raw, violations, received_at, endpoint))
    return accepted, quarantined
