"""Send limits: quiet hours in the customer's time zone, per-trigger cooldown, frequency cap.

Quiet hours are wall-clock times in the customer's zone, so they are computed with zoneinfo on the
local calendar date, never by adding 24 h: on a DST change day the quiet night is 1 h shorter or
longer in UTC terms, and 08:00 local is 07:00 or 09:00 UTC depending on the season.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .definitions import QuietHours

_ZONES: dict[str, ZoneInfo | None] = {}


def zone(name: str | None) -> ZoneInfo | None:
    """The zone for an IANA name, None for unknown names (cached: this runs per fire)."""
    if not name:
        return None
    if name not in _ZONES:
        try:
            _ZONES[name] = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            _ZONES[name] = None
    return _ZONES[name]


def _in_window(t: time, start: time, end: time) -> bool:
    if start <= end:
        return start <= t < end
    return t >= start or t < end  # the window wraps midnight


def quiet_until(now: datetime, tz_name: str | None, quiet: QuietHours | None) -> datetime | None:
    """When the quiet hours around `now` end (UTC), or None if `now` is outside them."""
    if quiet is None or quiet.start == quiet.end:
        return None
    tz = zone(tz_name) or zone(quiet.default_timezone) or timezone.utc
    local = now.astimezone(tz)
    if not _in_window(local.time().replace(tzinfo=None), quiet.start, quiet.end):
        return None
    day = local.date()
    if quiet.start > quiet.end and local.time().replace(tzinfo=None) >= quiet.start:
        day = day + timedelta(days=1)  # evening part of a window that ends tomorrow morning
    # fold=0 and a round trip through UTC resolve an end time inside a DST gap to a real instant
    end = datetime.combine(day, quiet.end, tzinfo=tz).astimezone(timezone.utc)
    return max(end, now + timedelta(microseconds=1))


def cooldown_blocks(history: list[tuple[str, datetime]], trigger: str, cooldown: timedelta,
                    now: datetime) -> bool:
    """True if this customer got `trigger` less than `cooldown` ago."""
    return any(name == trigger and now - at < cooldown for name, at in history)


def cap_blocks(history: list[tuple[str, datetime]], max_messages: int, window: timedelta,
               now: datetime) -> bool:
    """True if the customer already got `max_messages` triggered messages within `window`."""
    return sum(1 for _, at in history if now - at < window) >= max_messages
