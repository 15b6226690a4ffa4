"""The few fields of a Segment-format event that triggers look at, and the time semantics.

Time semantics:
- *event time* is when it happened on the customer's side: the event's `timestamp` (Segment's
  skew-corrected time), else `originalTimestamp`. It is capped at the receive time, because a
  client clock in the future must not push a timer out or make an order look "after" a cart.
  One more than the collector's window (collector/enrich.py, ten years) before the receive time,
  or one that leaves the datetime range, is never used: the record is a BadEvent (the collector
  quarantines such events; this guards records written to the bus by other means or before).
- *receive time* (processing time) is when the collector stored it on the bus (`received_at`).
- An event may arrive up to `allowed_lateness` after its event time. So once everything received
  up to receive time R has been consumed, no event with event time < R - allowed_lateness can
  still come: that is the trigger's *watermark*, and a timer due at event time D fires only when
  the watermark has passed D. An order placed before D that arrives late still cancels it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from dateutil.parser import isoparse

# The collector's window (collector/enrich.py; a test keeps them equal). Not imported from there:
# that would load the collector's app and metrics into the trigger engine's process.
MAX_EVENT_AGE = timedelta(days=3653)


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    at: datetime  # event time, UTC
    received_at: datetime  # receive time, UTC
    message_id: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    cart_id: str | None = None
    checkout_id: str | None = None
    order_id: str | None = None
    timezone: str | None = None

    def identities(self) -> tuple[str, ...]:
        """The customer identities it carries: `user:<id>` and/or `anon:<id>`."""
        out = []
        if self.user_id:
            out.append(f"user:{self.user_id}")
        if self.anonymous_id:
            out.append(f"anon:{self.anonymous_id}")
        return tuple(out)

    def ids(self, fields) -> tuple[str, ...]:
        """Identifiers of this event for the given fields, `customer` expanding to identities."""
        out: list[str] = []
        for f in fields:
            if f == "customer":
                out.extend(self.identities())
            else:
                value = getattr(self, f)
                if value:
                    out.append(f"{f}:{value}")
        return tuple(out)


class BadEvent(ValueError):
    """The record cannot drive a trigger; the message says why (the engine counts and skips it)."""


def _text(value) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _parse_time(value) -> datetime | None:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value)  # fast path; handles Z and offsets on 3.11
        except ValueError:
            try:
                dt = isoparse(value)
            except (ValueError, OverflowError) as exc:
                raise BadEvent(f"unparseable timestamp {value[:64]!r}") from exc
    else:
        return None
    try:
        return (dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt).astimezone(timezone.utc)
    except OverflowError as exc:  # year 1 or 9999 with an offset
        raise BadEvent(f"timestamp {value!s:.64} is outside the datetime range") from exc


def from_segment(payload: dict, received_at: datetime, names: frozenset[str] | None = None) -> Event | None:
    """The trigger view of one bus event, or None when no trigger can use it.

    Calls that are not `track`s, or whose name is not in `names`, only matter when they link an
    anonymous id to a user id (identify after login): they come back as an event named "".
    """
    if not isinstance(payload, dict):
        raise BadEvent(f"event is not a JSON object: {type(payload).__name__}")
    name = payload.get("event")
    if payload.get("type", "track") != "track" or not isinstance(name, str) or not name \
            or (names is not None and name not in names):
        user, anon = _text(payload.get("userId")), _text(payload.get("anonymousId"))
        return Event("", received_at, received_at, None, user, anon) if user and anon else None
    at = _parse_time(payload.get("timestamp")) or _parse_time(payload.get("originalTimestamp"))
    at = received_at if at is None or at > received_at else at
    if at < received_at - MAX_EVENT_AGE:
        raise BadEvent(f"event time {at.isoformat()} is more than {MAX_EVENT_AGE.days} days before its receipt")
    props = payload.get("properties") or {}
    context = payload.get("context") or {}
    if not isinstance(props, dict) or not isinstance(context, dict):
        raise BadEvent("properties and context must be JSON objects")
    return Event(
        name=name,
        at=at,
        received_at=received_at,
        message_id=_text(payload.get("messageId")),
        user_id=_text(payload.get("userId")),
        anonymous_id=_text(payload.get("anonymousId")),
        cart_id=_text(props.get("cart_id")),
        checkout_id=_text(props.get("checkout_id")),
        order_id=_text(props.get("order_id")),
        timezone=_text(context.get("timezone")),
    )
