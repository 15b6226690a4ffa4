"""Embedded event bus: an append-only log table in a SQLite file in WAL mode.

Why SQLite: no server, crash-safe, and WAL lets many processes read while one writes (writers from
several processes queue on the file lock via busy_timeout). Offsets are an AUTOINCREMENT rowid
assigned inside the write transaction; since write transactions are serialized, offsets become
visible in increasing order and are never reused.

Durability: `synchronous=FULL` (default) fsyncs the WAL at every commit, so an appended event
survives a process kill *and* an OS crash or power loss. `synchronous=NORMAL` in WAL mode survives
a process kill (the commit is in the OS page cache) but may lose the last commits on power loss;
choose it with `?synchronous=normal` only where that is acceptable. Callers batch many events per
append (group commit) so the fsync is amortized.

Dedup: a side index holds (64-bit hash of the messageId, offset) of every event in the window; a
hash hit is confirmed against the log's own messageId, so a collision never drops an event.
Integer keys keep the index ~3x smaller than the text ids, and every append inserts into it at
random places, so its size decides the cost of a commit once it outgrows the cache. Entries older
than the window are pruned: a messageId re-sent after the window is stored again (Segment
semantics), within it never twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import orjson

from .base import DEFAULT_DEDUP_WINDOW_S, Appended, BusRecord, message_id_of

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PRUNE_EVERY_S = 60.0
_PRUNE_MAX_ROWS = 200_000
# Checkpoints (WAL -> database file) run in a background thread of each writing process, outside
# the write lock, so an append never waits for one; the writer's own automatic checkpoint is only a
# safety net (~80 MB of WAL) for when the background one falls behind.
_CHECKPOINT_EVERY_S = 1.0
_AUTOCHECKPOINT_PAGES = 20_000


def id_hash(message_id: str) -> int:
    """The dedup index key of a messageId: 64 bits of BLAKE2b, as a signed SQLite integer."""
    return int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=8).digest(), "big", signed=True)


class SqliteBus:
    def __init__(
        self,
        path: str | Path,
        table: str = "events",
        synchronous: str = "FULL",
        dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S,
    ) -> None:
        if not _IDENT.match(table):
            raise ValueError(f"invalid bus table name {table!r}: use letters, digits, underscore")
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.path = Path(path)
        self.table = table
        self.dedup_window_s = float(dedup_window_s)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Writers of several processes queue on this flock: it wakes the next one at once, where
        # SQLite's own busy handler sleeps in growing steps (up to 100 ms) under contention.
        self._lockfile = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._next_prune = 0.0
        self._conn = sqlite3.connect(
            str(self.path), timeout=60, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout=60000")
        self._conn.create_function("bus_id_hash", 1, id_hash, deterministic=True)
        # Switching a new file to WAL fails at once (no busy wait) while another process does the
        # same, e.g. two collector workers starting together: take the writers' lock for it.
        fcntl.flock(self._lockfile, fcntl.LOCK_EX)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
        finally:
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)
        self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._conn.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
        self._create()
        self._checkpointer: _Checkpointer | None = None

    def _create(self) -> None:
        t = self.table
        with self._tx():
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (bus_offset INTEGER PRIMARY KEY AUTOINCREMENT,"
                " message_id TEXT NOT NULL, received_at REAL NOT NULL, payload BLOB NOT NULL)"
            )
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t}_ids (h INTEGER NOT NULL, bus_offset INTEGER NOT NULL,"
                " PRIMARY KEY (h, bus_offset)) WITHOUT ROWID"
            )
            old = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (f"{t}_dedup",)
            ).fetchone()
            if old:  # a bus written before the hashed index: move its entries over once
                self._conn.execute(
                    f"INSERT OR IGNORE INTO {t}_ids (h, bus_offset)"
                    f" SELECT bus_id_hash(message_id), bus_offset FROM {t}_dedup"
                )
                self._conn.execute(f"DROP TABLE {t}_dedup")
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t}_groups (grp TEXT PRIMARY KEY,"
                " committed INTEGER NOT NULL)"
            )
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t}_meta (key TEXT PRIMARY KEY, value INTEGER)"
            )

    def _tx(self):
        bus = self

        class _Tx:
            def __enter__(self_inner):
                fcntl.flock(bus._lockfile, fcntl.LOCK_EX)
                try:
                    bus._conn.execute("BEGIN IMMEDIATE")
                except BaseException:
                    fcntl.flock(bus._lockfile, fcntl.LOCK_UN)
                    raise

            def __exit__(self_inner, exc_type, exc, tb):
                try:
                    bus._conn.execute("ROLLBACK" if exc_type else "COMMIT")
                finally:
                    fcntl.flock(bus._lockfile, fcntl.LOCK_UN)
                return False

        return _Tx()

    # -- writing -------------------------------------------------------------------------------
    def append(self, events: Sequence[dict]) -> list[int]:
        return [a.offset for a in self.append_detailed(events)]

    def append_detailed(self, events: Sequence[dict]) -> list[Appended]:
        if not events:
            return []
        ids = [message_id_of(e) for e in events]
        payloads: dict[str, bytes] = {}  # first copy of each messageId, serialized before locking
        for mid, ev in zip(ids, events):
            if mid not in payloads:
                payloads[mid] = orjson.dumps(ev if ev.get("messageId") == mid else {**ev, "messageId": mid})
        hashes = {mid: id_hash(mid) for mid in payloads}
        t = self.table
        with self._lock, self._tx():
            known = self._known_offsets(hashes)
            now = time.time()
            rows = [(mid, now, p) for mid, p in payloads.items() if mid not in known]
            if rows:
                self._conn.executemany(
                    f"INSERT INTO {t} (message_id, received_at, payload) VALUES (?, ?, ?)", rows
                )
                # one transaction under the write lock: the new rows have consecutive offsets
                first = self._conn.execute("SELECT last_insert_rowid()").fetchone()[0] - len(rows) + 1
                fresh = {row[0]: first + k for k, row in enumerate(rows)}
                self._conn.executemany(
                    f"INSERT INTO {t}_ids (h, bus_offset) VALUES (?, ?)",
                    [(hashes[mid], off) for mid, off in fresh.items()],
                )
            else:
                fresh = {}
            if now >= self._next_prune:
                self._prune_dedup(now)
                self._next_prune = now + _PRUNE_EVERY_S
        if self._checkpointer is None:
            self._checkpointer = _Checkpointer(self.path)
        self._checkpointer.wanted.set()
        out, stored = [], set()
        for mid in ids:
            if mid in fresh and mid not in stored:
                out.append(Appended(fresh[mid], False))
                stored.add(mid)
            else:
                out.append(Appended(known.get(mid) or fresh[mid], True))
        return out

    def _known_offsets(self, hashes: dict[str, int]) -> dict[str, int]:
        """Offsets of the messageIds already stored in the window: index hits by hash, confirmed
        against the messageId in the log (two ids sharing a hash are both kept)."""
        candidates = [off for (off,) in self._select_in(f"SELECT bus_offset FROM {self.table}_ids WHERE h IN",
                                                         list(set(hashes.values())))]
        found: dict[str, int] = {}
        for off, mid in self._select_in(f"SELECT bus_offset, message_id FROM {self.table} WHERE bus_offset IN",
                                        candidates):
            if mid in hashes and (mid not in found or off < found[mid]):
                found[mid] = off
        return found

    def _select_in(self, sql: str, values: list) -> list[tuple]:
        """Rows of `sql` followed by `(?, ...)` over `values`, in chunks of 500 parameters."""
        rows: list[tuple] = []
        for k in range(0, len(values), 500):
            chunk = values[k : k + 500]
            rows += self._conn.execute(f"{sql} ({','.join('?' * len(chunk))})", chunk).fetchall()
        return rows

    def _prune_dedup(self, now: float) -> None:
        """Forget messageIds stored before the window (bisect on offsets: received_at grows)."""
        t = self.table
        row = self._conn.execute(f"SELECT value FROM {t}_meta WHERE key='pruned_upto'").fetchone()
        lo = row[0] if row else 0
        hi = min(self._conn.execute(f"SELECT coalesce(max(bus_offset),0) FROM {t}").fetchone()[0],
                 lo + _PRUNE_MAX_ROWS)
        cutoff = now - self.dedup_window_s
        while lo < hi:  # largest offset in (lo, hi] with received_at < cutoff
            mid = (lo + hi + 1) // 2
            r = self._conn.execute(f"SELECT received_at FROM {t} WHERE bus_offset=?", (mid,)).fetchone()
            if r is not None and r[0] < cutoff:
                lo = mid
            else:
                hi = mid - 1
        start = row[0] if row else 0
        if lo <= start:
            return
        self._conn.execute(
            f"DELETE FROM {t}_ids WHERE (h, bus_offset) IN"
            f" (SELECT bus_id_hash(message_id), bus_offset FROM {t} WHERE bus_offset > ? AND bus_offset <= ?)",
            (start, lo),
        )
        self._conn.execute(
            f"INSERT INTO {t}_meta (key, value) VALUES ('pruned_upto', ?)"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (lo,),
        )

    # -- reading -------------------------------------------------------------------------------
    def read(self, after_offset: int, limit: int = 1000) -> list[BusRecord]:
        return [
            BusRecord(o, m, datetime.fromtimestamp(r, tz=timezone.utc), orjson.loads(p))
            for o, m, r, p in self.read_encoded(after_offset, limit)
        ]

    def read_encoded(self, after_offset: int, limit: int = 1000) -> list[tuple[int, str, float, str]]:
        """Like `read`, as (offset, messageId, received_at in epoch seconds, payload JSON text): the
        payload as stored (orjson's compact text, what `orjson.dumps` gives again for the decoded
        event), for a consumer that only stores it (raw.events), without decoding it into a dict."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT bus_offset, message_id, received_at, CAST(payload AS TEXT) FROM {self.table}"
                " WHERE bus_offset > ? ORDER BY bus_offset LIMIT ?",
                (int(after_offset), int(limit)),
            ).fetchall()
        return rows

    def committed(self, group: str) -> int:
        with self._lock:
            row = self._conn.execute(
                f"SELECT committed FROM {self.table}_groups WHERE grp=?", (group,)
            ).fetchone()
        return row[0] if row else 0

    def read_group(
        self, group: str, consumer: str, limit: int = 1000, block_ms: int = 0
    ) -> list[BusRecord]:
        """The group is one committed cursor shared by its consumers (at-least-once; exclusive
        per-consumer delivery needs the Redis bus)."""
        deadline = time.monotonic() + block_ms / 1000.0
        while True:
            records = self.read(self.committed(group), limit)
            if records or time.monotonic() >= deadline:
                return records
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def ack(self, group: str, offsets: Sequence[int]) -> None:
        """Cumulative, like a Kafka commit: the group's position moves to the highest offset."""
        if not offsets:
            return
        with self._lock, self._tx():
            self._conn.execute(
                f"INSERT INTO {self.table}_groups (grp, committed) VALUES (?, ?)"
                " ON CONFLICT(grp) DO UPDATE SET committed=max(committed, excluded.committed)",
                (group, int(max(offsets))),
            )

    def last_offset(self) -> int:
        with self._lock:
            return self._conn.execute(
                f"SELECT coalesce(max(bus_offset), 0) FROM {self.table}"
            ).fetchone()[0]

    def count(self) -> int:
        with self._lock:
            return self._conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0]

    def erase(self, match: Callable[[bytes], bool], needles: Sequence[str] = ()) -> int:
        """Remove for good every record whose payload `match`es (GDPR erasure); returns how many.

        `needles` (lower-case substrings, one of which every matching payload contains) narrow
        the scan in SQL. The bytes really go: secure_delete zeroes the freed cells, VACUUM rewrites
        the file and a TRUNCATE checkpoint empties the WAL (readers of other processes delay that
        until they finish: `remaining` then still reports 0 rows, the bytes go at the next one)."""
        t = self.table
        with self._lock:
            offsets = [o for o, p in self._candidates(needles) if match(p)]
            if not offsets:
                return 0
            self._conn.execute("PRAGMA secure_delete=ON")
            with self._tx():
                for k in range(0, len(offsets), 500):
                    chunk = offsets[k : k + 500]
                    marks = ",".join("?" * len(chunk))
                    self._conn.execute(f"DELETE FROM {t}_ids WHERE bus_offset IN ({marks})", chunk)
                    self._conn.execute(f"DELETE FROM {t} WHERE bus_offset IN ({marks})", chunk)
            fcntl.flock(self._lockfile, fcntl.LOCK_EX)
            try:
                self._conn.execute("VACUUM")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                fcntl.flock(self._lockfile, fcntl.LOCK_UN)
                self._conn.execute("PRAGMA secure_delete=OFF")
        return len(offsets)

    def remaining(self, match: Callable[[bytes], bool], needles: Sequence[str] = ()) -> int:
        """How many records `erase(match, needles)` would remove."""
        with self._lock:
            return sum(1 for _, p in self._candidates(needles) if match(p))

    def _candidates(self, needles: Sequence[str]) -> list[tuple[int, bytes]]:
        sql = f"SELECT bus_offset, payload FROM {self.table}"
        if needles:
            sql += " WHERE " + " OR ".join("instr(lower(CAST(payload AS TEXT)), ?) > 0" for _ in needles)
        return self._conn.execute(sql, list(needles)).fetchall()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            if self._lockfile >= 0:
                self._conn.close()
                os.close(self._lockfile)
                self._lockfile = -1

    def __enter__(self) -> "SqliteBus":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteBus({str(self.path)!r}, table={self.table!r})"


class _Checkpointer:
    """Moves committed WAL frames into the database file at most every second after appends
    (PASSIVE: never blocks readers or writers), so commits only append to the WAL."""

    def __init__(self, path: Path) -> None:
        self.wanted, self._stopped = threading.Event(), threading.Event()
        self._conn = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
        self._thread = threading.Thread(target=self._run, name="bus-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                if self.wanted.wait(0.5) and not self._stopped.wait(_CHECKPOINT_EVERY_S):
                    self.wanted.clear()
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            self._conn.close()

    def stop(self) -> None:
        self._stopped.set()
        self.wanted.set()  # wakes an idle thread now, not at its next 0.5 s poll
        self._thread.join(30)
