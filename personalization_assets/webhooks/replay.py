"""Tokens of signed webhook requests already used, so a captured request cannot be replayed.

Mailgun signs only `timestamp + token`, not the event: within the freshness window a captured
signature block could carry any event (a permanent bounce for a victim's address, say). Mailgun's
guidance is to keep the tokens seen and refuse a reused one. They are kept durably and shared by
every collector worker: in a SQLite file beside the e-mail events bus, or in Redis (SET NX with an
expiry) when that bus is Redis. A token is kept for twice the freshness window (a signature is
accepted from `tolerance` before to `tolerance` after its timestamp), then pruned.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from ..bus import sqlite_path

_PRUNE_EVERY_S = 30.0


class SqliteTokenLedger:
    def __init__(self, path: str | Path, keep_s: float) -> None:
        self.path, self.keep_s = Path(path), keep_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS seen_tokens (provider TEXT NOT NULL, token TEXT NOT NULL,"
                           " seen_at REAL NOT NULL, PRIMARY KEY (provider, token))")
        self._conn.execute("CREATE INDEX IF NOT EXISTS seen_tokens_at ON seen_tokens (seen_at)")
        self._next_prune = 0.0

    def claim(self, provider: str, token: str, now: float | None = None) -> bool:
        """True the first time (provider, token) is seen within the window, False afterwards."""
        now = time.time() if now is None else now
        with self._lock:
            if now >= self._next_prune:
                self._conn.execute("DELETE FROM seen_tokens WHERE seen_at < ?", (now - self.keep_s,))
                self._next_prune = now + _PRUNE_EVERY_S
            try:
                self._conn.execute("INSERT INTO seen_tokens (provider, token, seen_at) VALUES (?, ?, ?)",
                                   (provider, token, now))
            except sqlite3.IntegrityError:
                return False
            return True

    def release(self, provider: str, token: str) -> None:
        """Forget a claimed token whose request was not stored (503), so the provider's retry works."""
        with self._lock:
            self._conn.execute("DELETE FROM seen_tokens WHERE provider = ? AND token = ?", (provider, token))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class RedisTokenLedger:
    def __init__(self, url: str, keep_s: float, prefix: str = "webhooks:seen:") -> None:
        import redis

        self._r = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.keep_s, self.prefix = max(1, int(keep_s + 0.999)), prefix

    def claim(self, provider: str, token: str, now: float | None = None) -> bool:
        return bool(self._r.set(f"{self.prefix}{provider}:{token}", 1, nx=True, ex=self.keep_s))

    def release(self, provider: str, token: str) -> None:
        self._r.delete(f"{self.prefix}{provider}:{token}")

    def close(self) -> None:
        self._r.close()


def open_token_ledger(bus_url: str, keep_s: float):
    """The ledger beside the e-mail events bus at `bus_url` (same Redis, or a file in its directory)."""
    parts = urlsplit(bus_url)
    if parts.scheme in ("redis", "rediss"):
        return RedisTokenLedger(parts._replace(query="").geturl(), keep_s)
    if parts.scheme == "sqlite":
        return SqliteTokenLedger(Path(sqlite_path(bus_url)).parent / "webhook_tokens.db", keep_s)
    raise ValueError(f"no token ledger for bus URL scheme {parts.scheme!r}: use sqlite:/// or redis://")
