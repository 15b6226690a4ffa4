"""Server-side fields: receivedAt and the clock-skew corrected timestamp, as Segment computes them.

timestamp = receivedAt - (sentAt - originalTimestamp): the device's clock error cancels out because
both sentAt and originalTimestamp come from the same clock.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone


def parse_ts(value) -> datetime | None:
    """ISO-8601 to aware UTC; naive values are read as UTC; anything else is None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def enrich(event: dict, received_at: datetime, shared: dict) -> dict:
    """A copy of `event` with receivedAt, originalTimestamp, sentAt, timestamp and messageId set."""
    out = dict(event)
    ctx = shared.get("context")
    if isinstance(ctx, dict):
        own = out.get("context")
        out["context"] = {**ctx, **own} if isinstance(own, dict) else dict(ctx)
    if not isinstance(out.get("messageId"), str) or not out.get("messageId"):
        out["messageId"] = f"srv-{uuid.uuid4()}"
    original_raw = out.get("originalTimestamp") or out.get("timestamp")
    sent_raw = out.get("sentAt") or shared.get("sentAt")
    original, sent = parse_ts(original_raw), parse_ts(sent_raw)
    out["receivedAt"] = iso(received_at)
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

