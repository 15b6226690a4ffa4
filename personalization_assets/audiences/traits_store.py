"""Computed trait values where the trigger engine reads: a table beside its guard state.

The warehouse computes the traits (`traits.py`); each refresh copies them, per tracked userId, into
`customer_traits` of the guard store file (`trigger_guard.sqlite`), the same way the consent and
purchase guards get there (`realtime/warehouse_guard.py`). A real-time decision that looks up a
trait reads the number the warehouse audiences use, with the instant it describes.

The engine reads through `TraitReader`: one connection held open and one indexed lookup per
decision, like the guard store (`SqliteGuardProvider`). A sync replaces the table in one
transaction; in WAL mode the next lookup sees the new snapshot, so a running engine picks up
every refresh without a restart or a cache to invalidate.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ..heap import collecting
from ..quality.table_checks import CHUNK_ROWS, read_chunks
from ..warehouse import WarehouseConnection
from .traits import SNAPSHOT

_SCHEMA = ("create table if not exists customer_traits (customer_id text primary key, "
           "traits text not null, as_of real not null)")


def trait_rows(conn: WarehouseConnection, has_identity: bool,
               chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[str, dict[str, Any]]]:
    """(userId, {trait: value}) for every tracked userId of a customer in `marts.computed_traits`,
    read `chunk_rows` at a time: copying 1M customers' traits peaked at 1,387 MB as one frame and
    its rows, 547 MB streamed. Streams on `conn`: run nothing else on it until the rows are consumed."""
    if has_identity:
        sql = (f"select m.identity as customer_id, t.* from {SNAPSHOT} t join core.identity_map m "
               "on m.customer_key = t.customer_key and m.identity_type = 'user_id' order by 1")
    else:  # without identity resolution an event's customer is its userId (or anon:<id>)
        sql = (f"select t.customer_key as customer_id, t.* from {SNAPSHOT} t "
               "where t.customer_key not like 'anon:%' order by 1")
    for frame in collecting(read_chunks(conn, sql, rows=chunk_rows)):
        names = [c for c in frame.columns if c not in ("customer_id", "customer_key", "as_of")]
        yield from ((str(r["customer_id"]), {n: _plain(r[n]) for n in names}) for r in frame.to_dict("records"))


def _plain(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    return int(value) if isinstance(value, float) and value.is_integer() else value


class TraitStore:
    """The `customer_traits` table of a SQLite file (WAL); the warehouse sync writes, the engine reads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        conn.execute("pragma journal_mode=wal")
        conn.execute(_SCHEMA)
        return conn

    def sync(self, rows: Iterable[tuple[str, dict[str, Any]]], as_of: datetime) -> int:
        """Make the table hold exactly these rows (a snapshot: a customer gone from it is gone here),
        in one transaction; the rows may be a stream. Returns how many."""
        written = 0

        def params():
            nonlocal written
            for cid, values in rows:
                written += 1
                yield cid, json.dumps(values, sort_keys=True), as_of.timestamp()

        conn = self._connect()
        try:
            conn.execute("begin immediate")
            try:
                conn.execute("delete from customer_traits")
                conn.executemany("insert into customer_traits values (?, ?, ?)", params())
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise
        finally:
            conn.close()
        return written

    def traits(self, customer_id: str) -> tuple[dict[str, Any], datetime | None]:
        """({trait: value}, the instant they describe) for a userId; ({}, None) when unknown."""
        if not self.path.exists():
            return {}, None
        conn = self._connect()
        try:
            row = conn.execute("select traits, as_of from customer_traits where customer_id = ?",
                               (customer_id,)).fetchone()
        finally:
            conn.close()
        if row is None:
            return {}, None
        return json.loads(row[0]), datetime.fromtimestamp(row[1], timezone.utc)

    def erase(self, customer_ids: set[str]) -> int:
        """Remove these customers' rows for good (GDPR erasure), as the guard store does."""
        ids = sorted(customer_ids)
        if not ids or not self.path.exists():
            return 0
        conn = self._connect()
        try:
            removed = conn.execute(f"delete from customer_traits where customer_id in ({','.join('?' * len(ids))})",
                                   ids).rowcount
            if removed:
                conn.execute("vacuum")
                conn.execute("pragma wal_checkpoint(truncate)").fetchall()
        finally:
            conn.close()
        return removed

    def holds(self, customer_ids: set[str]) -> int:
        """How many of these customers have a row here."""
        ids = sorted(customer_ids)
        if not ids or not self.path.exists():
            return 0
        conn = self._connect()
        try:
            return conn.execute(f"select count(*) from customer_traits where customer_id in "
                                f"({','.join('?' * len(ids))})", ids).fetchone()[0]
        finally:
            conn.close()


class TraitReader:
    """The engine's read side of `customer_traits`: a `realtime.guards.TraitSource`.

    One connection (opened on first use, shared by threads under a lock), one lookup per
    decision, so each decision sees the latest sync. A file or table that does not exist yet
    means every customer is unknown, never an error."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def traits(self, customer_id: str, now: datetime | None = None) -> tuple[dict[str, Any], datetime | None]:
        """({trait: value}, the instant they describe) for a userId; ({}, None) when unknown."""
        with self._lock:
            if self._conn is None:
                if not self.path.exists():
                    return {}, None  # the warehouse has not synced yet
                self._conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                             check_same_thread=False)
                self._conn.execute("pragma journal_mode=wal")
                self._conn.execute(_SCHEMA)
            row = self._conn.execute("select traits, as_of from customer_traits where customer_id = ?",
                                     (customer_id,)).fetchone()
        if row is None:
            return {}, None
        return json.loads(row[0]), datetime.fromtimestamp(row[1], timezone.utc)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
