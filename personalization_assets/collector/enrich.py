"""Server-side fields: receivedAt and the clock-skew corrected timestamp, as Segment computes them.

timestamp = receivedAt - (sentAt - originalTimestamp): the device's clock error cancels out because
both sentAt and originalTimestamp come from the same clock.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

UTC = timezone.utc


class BadTimestamp(ValueError):
    def __init__(self, field: str, value) -> None:
        super().__init__(f"{field} is not an ISO-8601 timestamp: {value!r}")
        self.field = field


def parse_ts(value) -> datetime | None:
    """ISO-8601 to aware UTC; naive values are read as UTC; anything else is None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts if ts.tzinfo is UTC else ts.astimezone(UTC)


def _parse_field(event: dict, field: str, value) -> datetime | None:
    if value is None:
        return None
    ts = parse_ts(value)
    if ts is None:
        raise BadTimestamp(field, value)
    return ts


def iso(ts: datetime) -> str:
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="milliseconds")[:-6] + "Z"


def enrich(event: dict, received_at: datetime, shared: dict, received_iso: str | None = None,
           shared_sent: datetime | None = None) -> dict:
    """A copy of `event` with receivedAt, originalTimestamp, sentAt, timestamp and messageId set.

    `received_at` must be UTC. Per request the caller may pass `received_iso` (= iso(received_at))
    and `shared_sent` (the parsed batch sentAt). Raises BadTimestamp for unparseable client times
    and OverflowError when the correction leaves the datetime range.
    """
    out = dict(event)
    ctx = shared.get("context")
    if ctx is not None and isinstance(ctx, dict):
        own = out.get("context")
        out["context"] = {**ctx, **own} if isinstance(own, dict) else dict(ctx)
    mid = out.get("messageId")
    if not mid or not isinstance(mid, str):
        out["messageId"] = f"srv-{uuid.uuid4()}"
    field = "originalTimestamp" if out.get("originalTimestamp") is not None else "timestamp"
    original_raw = out.get(field)
    original = _parse_field(out, field, original_raw)
    if out.get("sentAt") is not None:
        sent_raw, sent = out["sentAt"], _parse_field(out, "sentAt", out["sentAt"])
    else:
        sent_raw = shared.get("sentAt")
        sent = shared_sent if shared_sent is not None else _parse_field(out, "sentAt", sent_raw)
    out["receivedAt"] = received_iso or iso(received_at)
    if original is not None:
        out["originalTimestamp"] = original_raw
    if sent_raw is not None:
        out["sentAt"] = sent_raw
    if original is not None and sent is not None:
        corrected = received_at - (sent - original)
    else:
        corrected = original or received_at
    out["timestamp"] = iso(corrected)
    return out
