"""Event bus: one interface, an embedded SQLite log (default) and Redis Streams.

URLs:
  sqlite:///abs/path/events.db[?table=events&synchronous=full&dedup_window=86400]
  redis://127.0.0.1:6379/0[?stream=events&dedup_window=86400]
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .base import DEFAULT_DEDUP_WINDOW_S, Appended, BusRecord, EventBus

__all__ = ["Appended", "BusRecord", "EventBus", "open_bus", "quarantine_topic"]


def quarantine_topic(topic: str) -> str:
    """Name of the table/stream that keeps the quarantined events next to `topic`."""
    return f"{topic}_quarantine"


def open_bus(url: str, *, topic: str | None = None) -> EventBus:
    """Open the bus at `url`; `topic` overrides the table (SQLite) or stream (Redis) name."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    window = float(params.pop("dedup_window", DEFAULT_DEDUP_WINDOW_S))
    if parts.scheme == "sqlite":
        from .sqlite_bus import SqliteBus

        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path or path == "/":
            raise ValueError(f"sqlite bus URL needs a file path, e.g. sqlite:///abs/events.db: {url!r}")
        return SqliteBus(
            path,
            table=topic or params.pop("table", "events"),
            synchronous=params.pop("synchronous", "FULL"),
            dedup_window_s=window,
        )
    if parts.scheme in ("redis", "rediss"):
        from .redis_bus import RedisBus

        stream = topic or params.pop("stream", "events")
        redis_url = urlunsplit(parts._replace(query=urlencode(params)))
        return RedisBus(redis_url, stream=stream, dedup_window_s=window)
    raise ValueError(
        f"unknown bus URL scheme {parts.scheme!r} in {url!r}: use sqlite:///path/events.db"
        " or redis://host:6379/0?stream=events"
    )
