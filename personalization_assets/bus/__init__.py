"""Event bus: one interface, an embedded SQLite log (default) and Redis Streams.

URLs:
  sqlite:///abs/path/events.db[?table=events&synchronous=full&dedup_window=86400]
  redis://127.0.0.1:6379/0[?stream=events&dedup_window=86400]
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .base import DEFAULT_DEDUP_WINDOW_S, Appended, BusRecord, EventBus

__all__ = ["Appended", "BusRecord", "EventBus", "open_bus", "open_quarantine_bus", "sqlite_path"]


def sqlite_path(url: str) -> str:
    """The file path of a `sqlite:///...` URL (its query left out)."""
    parts = urlsplit(url)
    return (parts.netloc + parts.path) if parts.netloc else parts.path


def open_quarantine_bus(url: str, **kwargs) -> EventBus:
    """The log of quarantined events next to the bus at `url` (same file / same Redis): table or
    stream `<topic>_quarantine`. Its messageIds are derived from the bad event, so a retried batch
    does not quarantine the same event twice."""
    params = dict(parse_qsl(urlsplit(url).query))
    topic = params.get("table") or params.get("stream") or "events"
    return open_bus(url, topic=f"{topic}_quarantine", **kwargs)


def open_bus(url: str, *, topic: str | None = None, dedup_window_s: float | None = None) -> EventBus:
    """Open the bus at `url`; `topic` overrides the table (SQLite) or stream (Redis) name and
    `dedup_window_s` the URL's dedup_window (seconds, 24 h by default)."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    window = float(params.pop("dedup_window", DEFAULT_DEDUP_WINDOW_S))
    if dedup_window_s is not None:
        window = float(dedup_window_s)
    if parts.scheme == "sqlite":
        from .sqlite_bus import SqliteBus

        path = sqlite_path(url)
        if not path or path == "/":
            raise ValueError(f"sqlite bus URL needs a file path, e.g. sqlite:///abs/events.db: {url!r}")
        return SqliteBus(
            path,
            table=topic or params.get("table", "events"),
            synchronous=params.pop("synchronous", "FULL"),
            dedup_window_s=window,
        )
    if parts.scheme in ("redis", "rediss"):
        from .redis_bus import RedisBus

        stream = topic or params.get("stream", "events")
        params.pop("stream", None)
        redis_url = urlunsplit(parts._replace(query=urlencode(params)))
        return RedisBus(redis_url, stream=stream, dedup_window_s=window)
    from ..redact import redact_url

    raise ValueError(
        f"unknown bus URL scheme {parts.scheme!r} in {redact_url(url)!r}: use sqlite:///path/events.db"
        " or redis://host:6379/0?stream=events"
    )
