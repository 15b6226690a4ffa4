"""The durable outbox: one row per fire, keyed by the fire key, in a SQLite file (WAL).

States: queued (fire copied from the ledger, waiting for its payload) -> rendered -> sending ->
sent | failed | suppressed. Every transition stamps its time and keeps a reason.

Why `sending` is written (and committed) before the send: a crash between the send and the commit
of `sent` then leaves a `sending` row, which the next process re-sends with the same idempotency
key / Message-ID. Without it the crash would look like "never sent" and, on a destination without
keys, double-send silently. So: a destination that deduplicates on the key receives each fire
exactly once; SMTP, which keeps no key, gets at most one duplicate per crash (the message in flight).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

STATES = ("queued", "rendered", "sending", "sent", "failed", "suppressed")
FINAL = ("sent", "failed", "suppressed")

_SCHEMA = [
    f"""create table if not exists outbox (
        fire_key text primary key, idempotency_key text not null, ledger_rowid integer,
        trigger text not null, customer_id text, cart text, channel text not null,
        state text not null check (state in ({", ".join(repr(s) for s in STATES)})), reason text,
        attempts integer not null default 0, next_attempt_at real not null,
        recipient text, subject text, html text, text_body text, unsubscribe_url text,
        window_start real, ready_at real, decided_at real, enqueued_at real not null,
        rendered_at real, sending_at real, sent_at real, failed_at real, suppressed_at real,
        updated_at real not null)""",
    "create index if not exists outbox_due on outbox (state, next_attempt_at)",
    "create index if not exists outbox_updated on outbox (updated_at)",
]
COLUMNS = ["fire_key", "idempotency_key", "ledger_rowid", "trigger", "customer_id", "cart", "channel", "state",
           "reason", "attempts", "next_attempt_at", "recipient", "subject", "html", "text_body", "unsubscribe_url", "window_start",
           "ready_at", "decided_at", "enqueued_at", "rendered_at", "sending_at", "sent_at", "failed_at",
           "suppressed_at", "updated_at"]


def default_path() -> Path:
    """Where `personalization deliver` keeps the outbox by default: next to the trigger ledger."""
    from .. import settings

    return settings.data_dir() / "outbox.sqlite"


def idempotency_key(fire_key: str) -> str:
    """The key every send of this fire carries: stable across retries, restarts and hosts, and
    without the customer id in clear (it travels in headers and Message-IDs)."""
    return hashlib.sha256(fire_key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Fire:
    """A `fire` row of the trigger ledger."""

    fire_key: str
    trigger: str
    customer_id: str | None
    cart: str
    window_start: float
    ready_at: float | None
    decided_at: float
    ledger_rowid: int


@dataclass(frozen=True)
class Row:
    fire_key: str
    idempotency_key: str
    trigger: str
    customer_id: str | None
    cart: str | None
    state: str
    reason: str | None
    attempts: int
    recipient: str | None
    subject: str | None
    html: str | None
    text_body: str | None
    unsubscribe_url: str | None
    window_start: float | None
    ready_at: float | None
    decided_at: float | None


_ROW = ", ".join(Row.__dataclass_fields__)


class Outbox:
    def __init__(self, path: str | Path, clock=time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self.conn.execute("pragma journal_mode=wal")
        # NORMAL in WAL: a committed transaction survives a killed process (kill -9); only a power
        # loss may roll back the last ones, which then look like `sending` again or not yet sent.
        self.conn.execute("pragma synchronous=normal")
        for stmt in _SCHEMA:
            self.conn.execute(stmt)

    # -- intake ------------------------------------------------------------------------------
    def ledger_cursor(self) -> int:
        return self.conn.execute("select coalesce(max(ledger_rowid), 0) from outbox").fetchone()[0]

    def enqueue(self, fires: list[Fire], channel: str) -> int:
        """Queue fires; a fire already here (any state) is left alone. Returns how many are new."""
        now = self.clock()
        with self._tx():
            before = self.conn.total_changes
            self.conn.executemany(
                "insert or ignore into outbox (fire_key, idempotency_key, ledger_rowid, trigger, customer_id, cart,"
                " channel, state, next_attempt_at, window_start, ready_at, decided_at, enqueued_at, updated_at)"
                " values (?,?,?,?,?,?,?,'queued',?,?,?,?,?,?)",
                [(f.fire_key, idempotency_key(f.fire_key), f.ledger_rowid, f.trigger, f.customer_id, f.cart, channel,
                  now, f.window_start, f.ready_at, f.decided_at, now, now) for f in fires])
            return self.conn.total_changes - before

    # -- work --------------------------------------------------------------------------------
    def queued(self, limit: int = 500) -> list[Row]:
        return self._rows("state = 'queued' and next_attempt_at <= ?", (self.clock(),), limit)

    def due(self, limit: int = 100) -> list[Row]:
        """Rendered rows, and `sending` rows a crash interrupted or a retry postponed."""
        return self._rows("state in ('rendered', 'sending') and next_attempt_at <= ?", (self.clock(),), limit)

    def _rows(self, where: str, params: tuple, limit: int) -> list[Row]:
        found = self.conn.execute(f"select {_ROW} from outbox where {where} order by next_attempt_at, fire_key"
                                  f" limit ?", (*params, limit)).fetchall()
        return [Row(*r) for r in found]

    def rendered(self, key: str, recipient: str, subject: str, html: str, text: str, unsubscribe_url: str) -> None:
        self._set(key, "rendered", None, "rendered_at", recipient=recipient, subject=subject, html=html,
                  text_body=text, unsubscribe_url=unsubscribe_url)

    def sending(self, key: str) -> None:
        """Committed before the send: see the module docstring."""
        now = self.clock()
        with self._tx():
            self.conn.execute("update outbox set state = 'sending', attempts = attempts + 1, sending_at = ?,"
                              " updated_at = ? where fire_key = ?", (now, now, key))

    def sent(self, key: str, reason: str | None = None) -> None:
        self._set(key, "sent", reason, "sent_at")

    def failed(self, key: str, reason: str) -> None:
        self._set(key, "failed", reason, "failed_at")

    def suppressed(self, key: str, reason: str) -> None:
        self._set(key, "suppressed", reason, "suppressed_at")

    def postpone(self, key: str, delay_s: float, reason: str) -> None:
        """Try again later (state unchanged: a `sending` row stays `sending`, its key with it)."""
        now = self.clock()
        with self._tx():
            self.conn.execute("update outbox set next_attempt_at = ?, reason = ?, updated_at = ? where fire_key = ?",
                              (now + delay_s, reason, now, key))

    def waiting(self, key: str, delay_s: float, reason: str) -> int:
        """A queued row whose payload is missing: count the attempt, try later. Returns attempts."""
        now = self.clock()
        with self._tx():
            self.conn.execute("update outbox set attempts = attempts + 1, next_attempt_at = ?, reason = ?,"
                              " updated_at = ? where fire_key = ?", (now + delay_s, reason, now, key))
        return self.conn.execute("select attempts from outbox where fire_key = ?", (key,)).fetchone()[0]

    def _set(self, key: str, state: str, reason: str | None, stamp: str, **fields) -> None:
        now = self.clock()
        extra = "".join(f", {name} = ?" for name in fields)
        with self._tx():
            self.conn.execute(f"update outbox set state = ?, reason = ?, {stamp} = ?, updated_at = ?{extra}"
                              " where fire_key = ?", (state, reason, now, now, *fields.values(), key))

    def _tx(self):
        return _Transaction(self.conn)

    # -- reading -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        found = dict(self.conn.execute("select state, count(*) from outbox group by state").fetchall())
        return {s: int(found.get(s, 0)) for s in STATES}

    def erase(self, customer_ids: set[str]) -> int:
        """Remove these customers' rows for good (GDPR erasure: recipient, rendered body), then
        VACUUM and a TRUNCATE checkpoint so no copy stays in free pages or the WAL."""
        ids = sorted(customer_ids)
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        with self._tx():
            removed = self.conn.execute(f"delete from outbox where customer_id in ({marks})", ids).rowcount
        if removed:
            self.conn.execute("vacuum")
            self.conn.execute("pragma wal_checkpoint(truncate)").fetchall()
        return removed

    def close(self) -> None:
        self.conn.close()


class _Transaction:
    """`begin immediate` ... commit, or rollback on any error (the row keeps its last state)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("begin immediate")
        return self.conn

    def __exit__(self, exc_type, *_):
        self.conn.execute("rollback" if exc_type else "commit")
        return False


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def stats(path: str | Path, since: float = 0.0) -> dict:
    """Counts per state and latencies of the rows updated since `since` (epoch seconds), read-only:
    what a Dagster observation of `activation/triggered_emails` reports. A missing file is a sender
    that never ran: zeros.

    `expiry_to_sent_*_s`: timer expiry (due + lateness) -> accepted by the destination;
    `fire_to_sent_*_s`: fire recorded by the engine -> accepted."""
    out: dict = {"counts": {s: 0 for s in STATES}, "sent": 0, "expiry_to_sent_p50_s": None,
                 "expiry_to_sent_p95_s": None, "fire_to_sent_p50_s": None, "fire_to_sent_p95_s": None,
                 "by_reason": {}}
    path = Path(path)
    if not path.exists():
        return out
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        if not conn.execute("select 1 from sqlite_master where name = 'outbox'").fetchone():
            return out
        for state, n in conn.execute("select state, count(*) from outbox where updated_at >= ? group by state",
                                     (since,)).fetchall():
            out["counts"][state] = int(n)
        out["by_reason"] = {f"{s}:{r}": int(n) for s, r, n in conn.execute(
            "select state, reason, count(*) from outbox where updated_at >= ? and state in ('failed', 'suppressed')"
            " group by 1, 2 order by 1, 2", (since,)).fetchall()}
        sent = conn.execute("select sent_at - ready_at, sent_at - decided_at from outbox"
                            " where state = 'sent' and sent_at >= ?", (since,)).fetchall()
    finally:
        conn.close()
    out["sent"] = len(sent)
    expiry = [a for a, _ in sent if a is not None]
    fire = [b for _, b in sent if b is not None]
    for name, values in (("expiry_to_sent", expiry), ("fire_to_sent", fire)):
        out[f"{name}_p50_s"], out[f"{name}_p95_s"] = _pct(values, 50), _pct(values, 95)
    return out
