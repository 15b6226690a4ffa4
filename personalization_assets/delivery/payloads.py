"""The merge fields the sender renders with: `marts.personalization_payloads` per tracked userId.

The sender runs beside Dagster, and DuckDB allows one writing process (held by the runs), so it
reads a copy in SQLite: `sync(rows)` writes the rows of `payload_rows(conn)` (the payloads joined
with `core.identity_map`), from an asset or from the sender itself (`refresh_from_duckdb`, which
skips a turn while a run holds the warehouse).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

SELECT = """
select m.identity as customer_id, p.customer_key, p.email, p.payload
from core.identity_map m join marts.personalization_payloads p on p.customer_key = m.customer_key
where m.identity_type = 'user_id' order by customer_id
"""


def payload_rows(conn) -> list[tuple[str, str, str, str]]:
    """(customer_id, customer_key, email, payload JSON) from a warehouse connection (`Sql`)."""
    if not (conn.table_exists("core", "identity_map") and conn.table_exists("marts", "personalization_payloads")):
        return []
    frame = conn.query(SELECT)
    return [(str(r.customer_id), str(r.customer_key), str(r.email), str(r.payload)) for r in frame.itertuples()]


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

    def sync(self, rows: list[tuple[str, str, str, str | dict]]) -> int:
        """Upsert (customer_id, customer_key, email, payload) rows in one transaction."""
        now = time.time()
        params = [(cid, key, email, p if isinstance(p, str) else json.dumps(p, sort_keys=True), now)
                  for cid, key, email, p in rows]
        with self._lock:
            self.conn.execute("begin immediate")
            try:
                self.conn.executemany(
                    "insert into delivery_payloads values (?,?,?,?,?) on conflict(customer_id) do update set"
                    " customer_key=excluded.customer_key, email=excluded.email, payload=excluded.payload,"
                    " updated_at=excluded.updated_at", params)
                self.conn.execute("commit")
            except BaseException:
                self.conn.execute("rollback")
                raise
        return len(params)

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


class _DuckDB:
    """The two `Sql` operations `payload_rows` needs, on a raw DuckDB connection (the warehouse
    resource module imports Dagster, which this long-running process does without)."""

    def __init__(self, raw):
        self.raw = raw

    def table_exists(self, schema: str, table: str) -> bool:
        return bool(self.raw.execute("select count(*) from information_schema.tables where lower(table_schema) ="
                                     " lower(?) and lower(table_name) = lower(?)", [schema, table]).fetchone()[0])

    def query(self, sql: str):
        return self.raw.execute(sql).df()


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
        return store.sync(payload_rows(_DuckDB(raw)))
    finally:
        raw.close()
