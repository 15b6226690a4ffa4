"""The merge fields the sender renders with: `marts.personalization_payloads` per tracked userId.

The sender runs beside Dagster, and DuckDB allows one writing process (held by the runs), so it
reads a copy in SQLite: `refresh_from_duckdb` streams the rows of `payload_rows(raw)` (the payloads
joined with `core.identity_map`) into it, a mirror of the warehouse's table; it skips a turn while a
run holds the warehouse.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

CHUNK_ROWS = 10_000
SELECT = """
select m.identity as customer_id, p.customer_key, p.email, p.payload
from core.identity_map m join marts.personalization_payloads p on p.customer_key = m.customer_key
where m.identity_type = 'user_id'
"""


def payload_rows(raw, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[str, str, str, str]] | None:
    """(customer_id, customer_key, email, payload JSON) from a DuckDB connection, fetched
    `chunk_rows` at a time and in no order (an order would make DuckDB sort every payload before
    the first row); None when the warehouse has no payloads yet. Streams on `raw`: run nothing
    else on it until consumed. At 1M payloads of ~460 bytes a refresh peaks at 428 MB; a frame
    of them sorted peaked at 1,787 MB."""
    if not (_table_exists(raw, "core", "identity_map") and _table_exists(raw, "marts", "personalization_payloads")):
        return None
    result = raw.execute(SELECT)

    def rows():
        while chunk := result.fetchmany(chunk_rows):
            yield from ((str(cid), str(key), str(email), str(payload)) for cid, key, email, payload in chunk)
    return rows()


def _table_exists(raw, schema: str, table: str) -> bool:
    return bool(raw.execute("select count(*) from information_schema.tables where lower(table_schema) ="
                            " lower(?) and lower(table_name) = lower(?)", [schema, table]).fetchone()[0])


class PayloadStore:
    """`delivery_payloads` in a SQLite file (WAL), next to the outbox by default."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self.conn.execute("pragma journal_mode=wal")
        self.conn.execute("create table if not exists delivery_payloads (customer_id text primary key,"
                          " customer_key text, email text not null, payload text not null, updated_at real)")

    def sync(self, rows: Iterable[tuple[str, str, str, str | dict]], complete: bool = False) -> int:
        """Upsert (customer_id, customer_key, email, payload) rows in one transaction. `complete`:
        the rows are the whole warehouse table, so a payload it no longer holds (a customer no
        longer sendable, merged away or erased) is deleted from this copy too."""
        now, written = time.time(), 0

        def params():  # streamed: `rows` may be a generator over the warehouse's result
            nonlocal written
            for cid, key, email, p in rows:
                written += 1
                yield cid, key, email, p if isinstance(p, str) else json.dumps(p, sort_keys=True), now
        with self._lock:
            self.conn.execute("begin immediate")
            try:
                self.conn.executemany(
                    "insert into delivery_payloads values (?,?,?,?,?) on conflict(customer_id) do update set"
                    " customer_key=excluded.customer_key, email=excluded.email, payload=excluded.payload,"
                    " updated_at=excluded.updated_at", params())
                if complete:
                    self.conn.execute("delete from delivery_payloads where updated_at is not ?", (now,))
                self.conn.execute("commit")
            except BaseException:
                self.conn.execute("rollback")
                raise
        return written

    def get(self, customer_id: str) -> tuple[str, dict] | None:
        """(email, merge fields) of a tracked userId, or None when the warehouse has no payload."""
        with self._lock:
            row = self.conn.execute("select email, payload from delivery_payloads where customer_id = ?",
                                    (customer_id,)).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def erase(self, customer_ids: set[str]) -> int:
        ids = sorted(customer_ids)
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        with self._lock:
            removed = self.conn.execute(f"delete from delivery_payloads where customer_id in ({marks})", ids).rowcount
            if removed:
                self.conn.execute("vacuum")
                self.conn.execute("pragma wal_checkpoint(truncate)").fetchall()
        return removed

    def close(self) -> None:
        self.conn.close()


def refresh_from_duckdb(warehouse_path: str | Path, store: PayloadStore) -> int | None:
    """Copy the payloads from a DuckDB warehouse file; None when it is missing or a run holds it
    (DuckDB refuses a second process while one writes): the previous copy stays in use."""
    if not Path(warehouse_path).exists():
        return None
    import duckdb

    try:
        raw = duckdb.connect(str(warehouse_path), read_only=True)
    except duckdb.Error:  # locked by a writing process (IOException), or opened differently here
        return None
    try:
        rows = payload_rows(raw)
        return None if rows is None else store.sync(rows, complete=True)
    finally:
        raw.close()
