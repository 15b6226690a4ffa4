"""The fire ledger and the engine checkpoint, in one SQLite file (WAL) next to the event bus.

Why not the warehouse: DuckDB allows one writing process per file and the Dagster runs hold that
writer, so a long-running engine writing there would fail or block runs. SQLite in WAL mode gives
the engine its own durable, transactional store that Dagster can read at any time; the asset
`activation/trigger_fires` mirrors the ledger into the warehouse.

Exactly-once: a decision's `fire_key` is the primary key, so replaying events after a restart
inserts nothing new. The checkpoint (engine state + bus offset) is written in the same transaction
as the fires it produced, so a crash either keeps both or neither.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

import orjson

from .engine import Decision

_SCHEMA = [
    """create table if not exists trigger_fires (
        fire_key text primary key, trigger text not null, customer_id text, cart text not null,
        window_start real not null, due_at real not null, ready_at real, decided_at real not null,
        recorded_at real not null, outcome text not null, reason text, bus_offset integer)""",
    "create index if not exists trigger_fires_customer on trigger_fires (customer_id, decided_at)",
    "create index if not exists trigger_fires_recorded on trigger_fires (recorded_at)",
    # Cancel events (orders...) the engine has read, as `trigger|cart_id:..` / `trigger|user:..`: the
    # sender re-checks them right before a send, so an order arriving after the fire stops the e-mail.
    "create table if not exists orders_seen (id text primary key, at real not null)",
    """create table if not exists engine_checkpoint (
        id integer primary key check (id = 1), bus_offset integer not null, state blob not null,
        updated_at real not null)""",
]
ORDERS_MEMORY = timedelta(days=7)  # how long a fire's send can still be stopped by its order
COLUMNS = ["fire_key", "trigger", "customer_id", "cart", "window_start", "due_at", "ready_at",
           "decided_at", "recorded_at", "outcome", "reason", "bus_offset"]


@dataclass(frozen=True)
class Checkpoint:
    bus_offset: int
    state: dict


class Ledger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("pragma journal_mode=wal")
        # NORMAL in WAL: a power loss may roll back the last commits, fires and checkpoint
        # together; they are re-decided from the bus under the same keys, so nothing is lost or
        # doubled (senders deduplicate on fire_key). It saves an fsync per decision batch.
        self.conn.execute("pragma synchronous=normal")
        for stmt in _SCHEMA:
            self.conn.execute(stmt)

    def commit(self, decisions: Iterable[Decision], bus_offset: int | None = None,
               state: dict | None = None, orders: Iterable[tuple[str, datetime]] = ()) -> list[Decision]:
        """Record fire/suppress decisions, the orders read (id, event time) and the checkpoint
        atomically; returns the decisions that are new. A key already in the ledger is a replay:
        it is neither inserted nor returned."""
        now = time.time()
        new: list[Decision] = []
        self.conn.execute("begin immediate")
        try:
            for d in decisions:
                if d.kind not in ("fire", "suppress"):
                    continue
                cur = self.conn.execute(
                    "insert or ignore into trigger_fires values (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (d.fire_key, d.trigger, d.customer, d.group, d.window_start.timestamp(),
                     d.due_at.timestamp(), None if d.ready_at is None else d.ready_at.timestamp(),
                     d.decided_at.timestamp(), now, d.kind, d.reason, bus_offset))
                if cur.rowcount == 1:
                    new.append(d)
            self.conn.executemany("insert into orders_seen values (?, ?) on conflict(id) do update"
                                  " set at = max(at, excluded.at)", [(i, at.timestamp()) for i, at in orders])
            if state is not None:
                self.conn.execute("delete from orders_seen where at < ?", (now - ORDERS_MEMORY.total_seconds(),))
                self.conn.execute(
                    "insert into engine_checkpoint values (1, ?, ?, ?) on conflict(id) do update set"
                    " bus_offset=excluded.bus_offset, state=excluded.state, updated_at=excluded.updated_at",
                    (int(bus_offset or 0), orjson.dumps(state), now))
            self.conn.execute("commit")
        except BaseException:
            self.conn.execute("rollback")
            raise
        return new

    def checkpoint(self) -> Checkpoint | None:
        row = self.conn.execute("select bus_offset, state from engine_checkpoint where id = 1").fetchone()
        return None if row is None else Checkpoint(row[0], orjson.loads(row[1]))

    def recent(self, since: datetime) -> list[tuple[str, str, str | None, str, datetime]]:
        """(fire_key, trigger, customer, outcome, decided_at) decided since `since`."""
        rows = self.conn.execute(
            "select fire_key, trigger, customer_id, outcome, decided_at from trigger_fires"
            " where decided_at >= ? order by decided_at", (since.timestamp(),)).fetchall()
        return [(k, t, c, o, datetime.fromtimestamp(at, timezone.utc)) for k, t, c, o, at in rows]

    def fires(self, since_recorded: float = 0.0) -> list[tuple]:
        return self.conn.execute(
            f"select {', '.join(COLUMNS)} from trigger_fires where recorded_at >= ? order by recorded_at",
            (since_recorded,)).fetchall()

    def count(self, outcome: str = "fire") -> int:
        return self.conn.execute("select count(*) from trigger_fires where outcome = ?", (outcome,)).fetchone()[0]

    def erase(self, identities: set[str]) -> int:
        """Remove a person for good (GDPR erasure): their fires, and every timer, alias, link,
        history and decided key of the checkpointed state that names one of `identities` (their
        user and anonymous ids). Then VACUUM and a TRUNCATE checkpoint, so no copy stays in free
        pages or the WAL. Returns fires removed plus state entries dropped. The engine must not be
        running: it would checkpoint its in-memory state again."""
        ids = sorted(identities)
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        self.conn.execute("begin immediate")
        try:
            removed = self.conn.execute(f"delete from trigger_fires where customer_id in ({marks})", ids).rowcount
            removed += self.conn.execute(f"delete from orders_seen where {_order_marks(ids)}",
                                         _order_ids(ids)).rowcount
            row = self.conn.execute("select state from engine_checkpoint where id = 1").fetchone()
            if row is not None:
                state, dropped = _scrub(orjson.loads(row[0]), set(ids))
                if dropped:
                    self.conn.execute("update engine_checkpoint set state = ? where id = 1", (orjson.dumps(state),))
                removed += dropped
            self.conn.execute("commit")
        except BaseException:
            self.conn.execute("rollback")
            raise
        if removed:
            self.conn.execute("vacuum")
            self.conn.execute("pragma wal_checkpoint(truncate)").fetchall()
        return removed

    def holds(self, identities: set[str]) -> int:
        """Fires and state entries that still name one of `identities`."""
        ids = sorted(identities)
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        n = self.conn.execute(f"select count(*) from trigger_fires where customer_id in ({marks})", ids).fetchone()[0]
        n += self.conn.execute(f"select count(*) from orders_seen where {_order_marks(ids)}",
                               _order_ids(ids)).fetchone()[0]
        row = self.conn.execute("select state from engine_checkpoint where id = 1").fetchone()
        return n + (_scrub(orjson.loads(row[0]), set(ids))[1] if row is not None else 0)

    def close(self) -> None:
        self.conn.close()


def _order_ids(ids: list[str]) -> list[str]:
    """The `user:<id>` / `anon:<id>` parts of `orders_seen` keys (`trigger|user:<id>`) for `ids`."""
    return [*(f"user:{i}" for i in ids), *(f"anon:{i}" for i in ids)]


def _order_marks(ids: list[str]) -> str:
    return f"substr(id, instr(id, '|') + 1) in ({','.join('?' * (2 * len(ids)))})"


def _names(value, ids: set[str]) -> bool:
    """Whether a state entry names one of `ids` (a fire key `trigger|customer|cart|window` too)."""
    if isinstance(value, str):
        return value in ids or any(part in ids for part in value.split("|"))
    if isinstance(value, (list, tuple)):
        return any(_names(v, ids) for v in value)
    if isinstance(value, dict):
        return any(_names(k, ids) or _names(v, ids) for k, v in value.items())
    return False


def _scrub(state: dict, ids: set[str]) -> tuple[dict, int]:
    """The engine state without the entries (timer rows, cancels, aliases, links, history,
    decided keys) that name one of `ids`, and how many were dropped."""
    out, dropped = {}, 0
    for field, value in state.items():
        if isinstance(value, list) and field != "timer_fields":
            kept = [row for row in value if not _names(row, ids)]
        elif isinstance(value, dict):
            kept = {k: v for k, v in value.items() if not (_names(k, ids) or _names(v, ids))}
        else:
            kept = value
        dropped += len(value) - len(kept) if isinstance(value, (list, dict)) else 0
        out[field] = kept
    return out, dropped


def load_history(engine, ledger: Ledger, now: datetime, span: timedelta) -> None:
    """Re-teach the engine what the ledger knows (fire keys, cooldown and cap history)."""
    for key, trigger, customer, outcome, at in ledger.recent(now - span):
        if key in engine.decided:
            continue  # already in the restored checkpoint
        engine.mark_decided(key, at)
        if outcome == "fire" and customer:
            engine.record_fire(customer, trigger, at)


def read_fires(path: str | Path, since_recorded: float = 0.0):
    """The ledger as a DataFrame (read-only; safe while the engine writes: WAL readers never
    block the writer). A missing file is an engine that never ran: no rows."""
    import pandas as pd

    path = Path(path)
    rows: list = []
    if path.exists():
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            has = conn.execute("select 1 from sqlite_master where name='trigger_fires'").fetchone()
            if has:
                rows = conn.execute(f"select {', '.join(COLUMNS)} from trigger_fires where recorded_at >= ?"
                                    " order by recorded_at, fire_key", (since_recorded,)).fetchall()
        finally:
            conn.close()
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("window_start", "due_at", "ready_at", "decided_at", "recorded_at"):
        frame[c] = pd.to_datetime(frame[c].astype("float64"), unit="s", utc=True)
    frame["bus_offset"] = frame["bus_offset"].astype("Int64")
    for c in ("fire_key", "trigger", "customer_id", "cart", "outcome", "reason"):
        frame[c] = frame[c].astype("object")
    return frame
