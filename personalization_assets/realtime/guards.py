"""Firing guards: the customer's state read right before a fire, not when the timer started.

A timer can sit for hours; in that time the customer may unsubscribe, withdraw consent or buy
through a channel that never reaches the bus (phone, store). The engine therefore asks a
`GuardProvider` at decision time. Unknown customers are suppressed unless the provider is told
otherwise: without a recorded opt-in we may not send marketing email.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class CustomerState:
    known: bool = True
    email_opt_in: bool = True
    consent_processing: bool = True
    unsubscribed: bool = False
    last_purchase_at: datetime | None = None
    timezone: str | None = None


UNKNOWN = CustomerState(known=False, email_opt_in=False, consent_processing=False)


class GuardProvider(Protocol):
    def state(self, customer_id: str) -> CustomerState: ...


def suppression_reason(state: CustomerState) -> str | None:
    """Why this customer must not get a marketing message now, or None."""
    if state.unsubscribed:
        return "unsubscribed"
    if not (state.email_opt_in and state.consent_processing):
        return "no_consent" if state.known else "unknown_customer"
    return None


class DictGuardProvider:
    """In-memory guard state (backtests, tests); `allow_unknown` lets anyone else through."""

    def __init__(self, states: dict[str, CustomerState] | None = None, allow_unknown: bool = False):
        self.states = dict(states or {})
        self.allow_unknown = allow_unknown

    def state(self, customer_id: str) -> CustomerState:
        found = self.states.get(customer_id)
        if found is not None:
            return found
        return CustomerState(known=False) if self.allow_unknown else UNKNOWN


_SCHEMA = """
create table if not exists customer_guard (
    customer_id text primary key, email_opt_in integer not null, consent_processing integer not null,
    unsubscribed integer not null default 0, last_purchase_at real, timezone text, updated_at real)
"""


class SqliteGuardProvider:
    """Guard state in a SQLite file (WAL): the activation side writes unsubscribes and consent,
    the warehouse sync writes opt-ins, purchases and time zones; the engine only reads."""

    def __init__(self, path: str | Path, allow_unknown: bool = False):
        self.path = Path(path)
        self.allow_unknown = allow_unknown
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("pragma journal_mode=wal")
            self._conn.execute(_SCHEMA)
        return self._conn

    def state(self, customer_id: str) -> CustomerState:
        with self._lock:
            row = self._connect().execute(
                "select email_opt_in, consent_processing, unsubscribed, last_purchase_at, timezone"
                " from customer_guard where customer_id = ?", (customer_id,)).fetchone()
        if row is None:
            return CustomerState(known=False) if self.allow_unknown else UNKNOWN
        opt_in, consent, unsub, purchased, tz = row
        return CustomerState(True, bool(opt_in), bool(consent), bool(unsub),
                             None if purchased is None else datetime.fromtimestamp(purchased, timezone.utc),
                             tz)

    def upsert(self, customer_id: str, *, email_opt_in: bool = True, consent_processing: bool = True,
               unsubscribed: bool = False, last_purchase_at: datetime | None = None,
               timezone_name: str | None = None) -> None:
        with self._lock:
            self._connect().execute(
                "insert into customer_guard values (?, ?, ?, ?, ?, ?, ?) on conflict(customer_id) do update"
                " set email_opt_in=excluded.email_opt_in, consent_processing=excluded.consent_processing,"
                " unsubscribed=excluded.unsubscribed, last_purchase_at=excluded.last_purchase_at,"
                " timezone=excluded.timezone, updated_at=excluded.updated_at",
                (customer_id, int(email_opt_in), int(consent_processing), int(unsubscribed),
                 None if last_purchase_at is None else last_purchase_at.timestamp(), timezone_name,
                 datetime.now(timezone.utc).timestamp()))

    def sync(self, rows: list[tuple]) -> int:
        """Bulk upsert of (customer_id, email_opt_in, consent_processing, unsubscribed,
        last_purchase_at, timezone) rows copied from the warehouse, in one transaction.
        Sticky: a sync never clears an unsubscribe recorded here, and never moves a purchase back."""
        now = datetime.now(timezone.utc).timestamp()
        params = [(cid, int(opt), int(consent), int(unsub),
                   None if bought is None else bought.timestamp(), tz, now)
                  for cid, opt, consent, unsub, bought, tz in rows]
        with self._lock:
            conn = self._connect()
            conn.execute("begin immediate")
            try:
                conn.executemany(
                    "insert into customer_guard values (?, ?, ?, ?, ?, ?, ?) on conflict(customer_id) do update"
                    " set email_opt_in=excluded.email_opt_in, consent_processing=excluded.consent_processing,"
                    " unsubscribed=max(unsubscribed, excluded.unsubscribed),"
                    " last_purchase_at=nullif(max(coalesce(last_purchase_at, 0),"
                    " coalesce(excluded.last_purchase_at, 0)), 0),"
                    " timezone=excluded.timezone, updated_at=excluded.updated_at", params)
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise
        return len(params)

    def unsubscribe(self, customer_id: str) -> None:
        with self._lock:
            conn = self._connect()
            conn.execute("insert into customer_guard (customer_id, email_opt_in, consent_processing,"
                         " unsubscribed, updated_at) values (?, 0, 0, 1, ?) on conflict(customer_id)"
                         " do update set unsubscribed=1, updated_at=excluded.updated_at",
                         (customer_id, datetime.now(timezone.utc).timestamp()))

    def erase(self, customer_ids: set[str]) -> int:
        """Remove these customers' rows for good (GDPR erasure): deleted, then VACUUM and a
        TRUNCATE checkpoint so no copy stays in free pages or the WAL. Returns rows removed."""
        ids = sorted(customer_ids)
        if not ids or not self.path.exists():
            return 0
        with self._lock:
            conn = self._connect()
            marks = ",".join("?" * len(ids))
            removed = conn.execute(f"delete from customer_guard where customer_id in ({marks})", ids).rowcount
            if removed:
                conn.execute("vacuum")
                conn.execute("pragma wal_checkpoint(truncate)").fetchall()
        return removed

    def holds(self, customer_ids: set[str]) -> int:
        """How many of these customers have a row here."""
        ids = sorted(customer_ids)
        if not ids or not self.path.exists():
            return 0
        with self._lock:
            marks = ",".join("?" * len(ids))
            return self._connect().execute(f"select count(*) from customer_guard where customer_id in ({marks})",
                                           ids).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
