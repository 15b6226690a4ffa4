"""Unsubscribes, hard bounces and complaints as they arrive, for the sender's last-moment check.

The platforms' webhooks and the one-click unsubscribe endpoint append these to the e-mail events
bus. Through the warehouse they reach the guard store a run or two later (`staging.email_events`,
then `activation/trigger_guard`, eager); the sender does not wait for that: right before each
attempt it reads what the bus gained since its last look and stops a send to an address that
asked out, bounced hard or complained.

Kept in the outbox file, with the bus offset read up to, so a restarted sender does not read the
bus again from its start. Addresses are stored as the SHA-256 of the lower-cased address (the
suppression list keeps the same hashes after an erasure). Sticky, as `activation.suppression`:
only an explicit resubscribe newer than an unsubscribe lifts it; bounces and complaints stay.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from ..hashes import identifier_hash

log = logging.getLogger(__name__)

# bus event type -> the reason a send is stopped (only hard bounces are `bounce`: see email_events.model)
STOPS = {"bounce": "bounced", "spamreport": "complained", "unsubscribe": "unsubscribed",
         "group_unsubscribe": "unsubscribed"}
LIFTS = {"group_resubscribe"}  # lifts an unsubscribe older than itself, never a bounce or a complaint

_SCHEMA = [
    "create table if not exists bus_suppressions (email_sha256 text primary key, reason text not null,"
    " at real not null, provider text, bus_offset integer not null)",
    "create table if not exists bus_suppressions_cursor (id integer primary key check (id = 1),"
    " bus_offset integer not null)",
]


def _epoch(value) -> float:
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


class BusSuppressions:
    """Tails the e-mail events bus at `bus_url` into a table of the outbox's SQLite file.

    A SQLite bus that does not exist yet is looked for again on later polls (nothing has been
    appended, so nothing is missed); it is never created here."""

    def __init__(self, conn: sqlite3.Connection, bus_url: str, batch: int = 1000):
        self.conn, self.bus_url, self.batch = conn, bus_url, batch
        self._bus = None
        self._lock = threading.Lock()
        for stmt in _SCHEMA:
            self.conn.execute(stmt)

    def _open(self):
        if self._bus is None:
            from ..bus import open_bus, sqlite_path

            if urlsplit(self.bus_url).scheme == "sqlite" and not Path(sqlite_path(self.bus_url)).exists():
                return None

            self._bus = open_bus(self.bus_url)
        return self._bus

    def cursor(self) -> int:
        row = self.conn.execute("select bus_offset from bus_suppressions_cursor where id = 1").fetchone()
        return row[0] if row else 0

    def poll(self) -> int:
        """Read what the bus gained since the last poll; returns the records read. A bus that
        cannot be read now (Redis down, a locked file) is retried on the next poll: the sender
        keeps its other checks and says so in its log."""
        with self._lock:
            try:
                bus = self._open()
                if bus is None:
                    return 0
                read = 0
                while True:
                    records = bus.read(self.cursor(), self.batch)
                    if not records:
                        return read
                    self._store(records)
                    read += len(records)
                    if len(records) < self.batch:
                        return read
            except Exception as exc:  # noqa: BLE001 - the guard store still stops known addresses
                log.warning("e-mail events bus %s not read this time: %s: %s", self.bus_url, type(exc).__name__, exc)
                self.close()
                return 0

    def _store(self, records) -> None:
        stops, lifts = [], []
        for r in records:
            kind, email = r.event.get("type"), r.event.get("email")
            if not isinstance(email, str) or not email:
                continue
            if kind in STOPS:
                stops.append((identifier_hash(email), STOPS[kind], _epoch(r.event.get("timestamp")),
                              r.event.get("provider"), r.offset))
            elif kind in LIFTS:
                lifts.append((_epoch(r.event.get("timestamp")), identifier_hash(email)))
        self.conn.execute("begin immediate")
        try:
            # a bounce or complaint is never replaced by an unsubscribe (it says more), nor lifted
            self.conn.executemany(
                "insert into bus_suppressions values (?, ?, ?, ?, ?) on conflict(email_sha256) do update set"
                " reason = case when reason = 'unsubscribed' then excluded.reason else reason end,"
                " at = max(at, excluded.at), provider = excluded.provider, bus_offset = excluded.bus_offset", stops)
            self.conn.executemany("delete from bus_suppressions where reason = 'unsubscribed' and at < ?"
                                  " and email_sha256 = ?", lifts)
            self.conn.execute("insert into bus_suppressions_cursor values (1, ?) on conflict(id) do update"
                              " set bus_offset = excluded.bus_offset", (records[-1].offset,))
            self.conn.execute("commit")
        except BaseException:
            self.conn.execute("rollback")
            raise

    def reason(self, email: str | None) -> str | None:
        """Why this address must not be sent to now, from the bus, or None."""
        if not email:
            return None
        row = self.conn.execute("select reason, provider from bus_suppressions where email_sha256 = ?",
                                (identifier_hash(email),)).fetchone()
        return None if row is None else f"{row[0]} (e-mail events bus: {row[1] or 'unknown provider'})"

    def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
