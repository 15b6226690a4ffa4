"""Server-side fields: receivedAt and the event time, with Segment's and RudderStack's semantics.

- An explicit `timestamp` (a server library, a historical import, an offline queue) is the event
  time as sent: it is never recomputed.
- Without one, the event time is `originalTimestamp` corrected for the device's clock:
  timestamp = receivedAt - (sentAt - originalTimestamp). The clock error cancels out because
  sentAt and originalTimestamp come from the same clock. Without sentAt it is originalTimestamp.
- Without either, it is receivedAt. `originalTimestamp` is filled from an explicit `timestamp` when
  absent (Segment: "the timestamp value manually passed in through server-side libraries").

Event times outside [receivedAt - MAX_EVENT_AGE, receivedAt + MAX_EVENT_FUTURE] are refused
(BadTimestamp): year 1 or 9999 is a broken clock or a forged event, never a real one.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
MAX_EVENT_AGE = timedelta(days=3653)  # ten years: historical imports within that are accepted
MAX_EVENT_FUTURE = timedelta(days=1)


class BadTimestamp(ValueError):
    def __init__(self, field: str, value, problem: str | None = None) -> None:
        super().__init__(f"{field} {problem or 'is not an ISO-8601 timestamp'}: {str(value)[:64]!r}")
        self.field = field


def parse_ts(value) -> datetime | None:
    """ISO-8601 to aware UTC; naive values are read as UTC; anything else (or a time that leaves
    the datetime range once in UTC, e.g. 0001-01-01T00:00:00+01:00) is None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        ts = datetime.fromisoformat(value)
        if ts.tzinfo is None:
            return ts.replace(tzinfo=UTC)
        return ts if ts.tzinfo is UTC else ts.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _parse_field(field: str, value) -> datetime | None:
    if value is None:
        return None
    ts = parse_ts(value)
    if ts is None:
        try:  # it parses but overflows once in UTC: year 1 or 9999 with an offset
            datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise BadTimestamp(field, value) from None
        raise BadTimestamp(field, value, "is outside the accepted window")
    return ts


def iso(ts: datetime) -> str:
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="milliseconds")[:-6] + "Z"


def check_window(field: str, value, ts: datetime, received_at: datetime) -> None:
    if ts < received_at - MAX_EVENT_AGE or ts > received_at + MAX_EVENT_FUTURE:
        raise BadTimestamp(field, value, f"is outside the accepted window (at most {MAX_EVENT_AGE.days}"
                           f" days before and {MAX_EVENT_FUTURE.days} day after receipt)")


def enrich(event: dict, received_at: datetime, shared: dict, received_iso: str | None = None,
           shared_sent: datetime | None = None) -> dict:
    """A copy of `event` with receivedAt, originalTimestamp, sentAt, timestamp and messageId set.

    `received_at` must be UTC. Per request the caller may pass `received_iso` (= iso(received_at))
    and `shared_sent` (the parsed batch sentAt). Raises BadTimestamp for unparseable client times
    and event times outside the window, OverflowError when the correction leaves the datetime range.
    """
    out = dict(event)
    ctx = shared.get("context")
    if ctx is not None and isinstance(ctx, dict):
        own = out.get("context")
        out["context"] = {**ctx, **own} if isinstance(own, dict) else dict(ctx)
    mid = out.get("messageId")
    if not mid or not isinstance(mid, str):
        out["messageId"] = f"srv-{uuid.uuid4()}"
    explicit_raw, original_raw = out.get("timestamp"), out.get("originalTimestamp")
    explicit = _parse_field("timestamp", explicit_raw)
    original = _parse_field("originalTimestamp", original_raw)
    if out.get("sentAt") is not None:
        sent_raw, sent = out["sentAt"], _parse_field("sentAt", out["sentAt"])
    else:
        sent_raw = shared.get("sentAt")
        sent = shared_sent if shared_sent is not None else _parse_field("sentAt", sent_raw)
    out["receivedAt"] = received_iso or iso(received_at)
    if sent_raw is not None:
        out["sentAt"] = sent_raw
    if explicit is not None:
        event_time, field, value = explicit, "timestamp", explicit_raw
        if original is None:
            out["originalTimestamp"] = explicit_raw
    elif original is not None:
        event_time = received_at - (sent - original) if sent is not None else original
        field, value = "originalTimestamp", original_raw
    else:
        event_time, field, value = received_at, "timestamp", None
    check_window(field, value, event_time, received_at)
    out["timestamp"] = iso(event_time)
    return out
