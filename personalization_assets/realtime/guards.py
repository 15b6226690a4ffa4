"""Firing guards: the customer's state read right before a fire, not when the timer started.

A timer can sit for hours; in that time the customer may unsubscribe, withdraw consent or buy
through a channel that never reaches the bus (phone, store). The engine therefore asks a
`GuardProvider` at decision time. Unknown customers are suppressed unless the provider is told
otherwise: without a recorded opt-in we may not send marketing email.

A trigger's `when:` conditions on computed traits are checked here too, on the values a
`TraitSource` holds for the customer (the warehouse's `marts.computed_traits`, copied to the
guard store file by the traits asset): the same numbers the warehouse audiences use, as of the
instant they describe. A customer the store has no value for follows the trigger's
`trait_unknown` policy (default: suppress, reason `trait unknown: ...`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol


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


class TraitSource(Protocol):
    def traits(self, customer_id: str, now: datetime | None = None) -> tuple[dict[str, Any], datetime | None]:
        """({trait: value}, the instant they describe) for a userId; ({}, None) when unknown.
        `now` is the decision time (a replay of history computes the values as of then)."""
        ...


class NoTraits:
    """No trait store: every customer's traits are unknown (their trigger's policy decides)."""

    def traits(self, customer_id: str, now: datetime | None = None) -> tuple[dict[str, Any], datetime | None]:
        return {}, None


def trait_reason(rule, values: dict[str, Any], as_of: datetime | None, unknown: str = "suppress") -> str | None:
    """Why the computed-trait conditions `rule` (an audiences.model Rule) stop a fire, or None.

    Evaluated as the audience compilations do: a null value (no `last` event in the window) meets
    no comparison. A trait absent from `values` (customer not in the store yet, or a trait declared
    after the last sync) is unknown: `unknown="send"` lets the fire through, otherwise the reason
    is `trait unknown: NAME`."""
    from ..audiences.model import ComputedCond, Group

    if rule is None:
        return None
    missing: list[str] = []

    def holds(r) -> bool | None:  # None: depends on an unknown value
        if isinstance(r, Group):
            parts = [holds(p) for p in r.parts]
            if r.joiner == "all":
                return False if False in parts else (None if None in parts else True)
            return True if True in parts else (None if None in parts else False)
        assert isinstance(r, ComputedCond), r  # parse_when admits nothing else
        name = r.trait.name
        if name not in values:
            missing.append(name)
            return None
        return _compare(values[name], r.op, r.value)

    result = holds(rule)
    if result is True:
        return None
    stamp = as_of.isoformat() if as_of is not None else "never"
    if result is None:
        return None if unknown == "send" else f"trait unknown: {', '.join(dict.fromkeys(missing))} (as of {stamp})"
    failed = [c for c in _leaves(rule) if c.trait.name in values and not _compare(values[c.trait.name], c.op, c.value)]
    shown = "; ".join(f"{c.text} with {c.trait.name} = {values[c.trait.name]!r}" for c in failed)
    return f"trait: {shown} (as of {stamp})"


def _leaves(rule):
    from ..audiences.model import conditions

    return list(conditions(rule))


def _compare(value: Any, op: str, expected: Any) -> bool:
    from ..audiences.stream_plan import OPS  # the stream compilation's own operators

    if value is None:
        return False
    try:
        return bool(OPS[op](value, expected))
    except TypeError:  # e.g. a text value compared with a number: not met, and the reason shows both
        return False


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

    def sync(self, rows: Iterable[tuple]) -> int:
        """Bulk upsert of (customer_id, email_opt_in, consent_processing, unsubscribed,
        last_purchase_at, timezone) rows copied from the warehouse, in one transaction.
        Sticky: a sync never clears an unsubscribe recorded here, and never moves a purchase back."""
        now = datetime.now(timezone.utc).timestamp()
        written = 0

        def params():  # streamed: `rows` may be a generator over the warehouse's chunks
            nonlocal written
            for cid, opt, consent, unsub, bought, tz in rows:
                written += 1
                yield cid, int(opt), int(consent), int(unsub), None if bought is None else bought.timestamp(), tz, now
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
                    " timezone=excluded.timezone, updated_at=excluded.updated_at", params())
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise
        return written

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
