"""The sender: trigger ledger -> outbox -> render -> last-moment check -> channel, as one loop.

It runs beside the trigger engine (`personalization deliver`), tails the engine's fire ledger by
rowid, and never starts a Dagster run. Guarantees, given the outbox (`outbox.py`):
- no fire is lost: each `fire` row of the ledger is copied into the outbox (keyed by fire key,
  never twice) and ends `sent`, `failed` or `suppressed`, each with a reason;
- a destination that deduplicates on the idempotency key (webhook) gets each fire exactly once;
- SMTP (no such key) and Braze get at most one duplicate per crash: the single message in flight,
  re-sent with the same Message-ID because `sending` was committed before the send.
One sender per outbox: a lock file next to it refuses a second process.
"""

from __future__ import annotations

import fcntl
import logging
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..realtime.guards import GuardProvider, suppression_reason
from .channels import Channel, SendError
from .outbox import Fire, Outbox, Row
from .payloads import PayloadStore, refresh_from_duckdb
from .render import Unsubscribe, render_fire
from .suppressions import BusSuppressions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8  # sends of one fire before it fails for good
    base_s: float = 0.5  # first retry after ~base, doubling, capped
    cap_s: float = 300.0
    payload_attempts: int = 6  # looks for a missing payload (~1 min) before the fire fails

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Exponential backoff with equal jitter: half fixed, half random, so retries of many fires
        after one outage do not arrive together."""
        full = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        return full / 2 + rng.random() * full / 2


class LedgerReader:
    """The trigger ledger, read-only (WAL readers never block the engine's writes)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def _ready(self) -> sqlite3.Connection | None:
        if self._conn is None and self.path.exists():
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
            if conn.execute("select count(*) from sqlite_master where name in ('trigger_fires', 'orders_seen')"
                            ).fetchone()[0] < 2:
                conn.close()  # an engine from before orders_seen, or one still creating its tables
                return None
            self._conn = conn
        return self._conn

    def fires(self, after_rowid: int, limit: int, recorded_since: float | None = None) -> list[Fire]:
        """`fire` rows after a rowid, or with `recorded_since` those recorded since then."""
        conn = self._ready()
        if conn is None:
            return []
        where, param = ("rowid > ?", after_rowid) if recorded_since is None else ("recorded_at >= ?", recorded_since)
        rows = conn.execute(
            "select fire_key, trigger, customer_id, cart, window_start, ready_at, decided_at, rowid"
            f" from trigger_fires where {where} and outcome = 'fire' order by rowid limit ?", (param, limit)).fetchall()
        return [Fire(*r) for r in rows]

    def ordered(self, trigger: str, group: str | None, customer: str | None, window_start: float | None) -> bool:
        """Whether the engine has read an event that cancels this trigger (an order) for this cart
        (any time), or by this customer since the cart's session started."""
        conn = self._ready()
        if conn is None:
            return False
        if group and conn.execute("select 1 from orders_seen where id = ?", (f"{trigger}|{group}",)).fetchone():
            return True
        at = conn.execute("select at from orders_seen where id = ?", (f"{trigger}|user:{customer}",)).fetchone() \
            if customer else None
        return at is not None and (window_start is None or at[0] >= window_start)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def read_ledger(path: Path, after_rowid: int, limit: int, recorded_since: float | None = None) -> list[Fire]:
    reader = LedgerReader(path)
    try:
        return reader.fires(after_rowid, limit, recorded_since)
    finally:
        reader.close()


class Sender:
    def __init__(self, outbox: Outbox, ledger_path: str | Path, payloads: PayloadStore, guard: GuardProvider,
                 channel: Channel, unsubscribe: Unsubscribe, *, policy: RetryPolicy = RetryPolicy(),
                 warehouse_path: str | Path | None = None, refresh_every_s: float = 60.0,
                 rng: random.Random | None = None, clock=time.time, holdouts=None, send_time=None,
                 suppressions: BusSuppressions | None = None):
        self.outbox, self.ledger, self.payloads = outbox, LedgerReader(ledger_path), payloads
        self.guard, self.channel, self.unsubscribe, self.policy = guard, channel, unsubscribe, policy
        self.warehouse_path, self.refresh_every_s = warehouse_path, refresh_every_s
        self.rng, self.clock = rng or random.Random(), clock
        self._cursor = outbox.ledger_cursor()
        self._refreshed = self._reconciled = float("-inf")
        self.holdouts = holdouts  # experiments.holdouts.HoldoutGate: a control member's fire is a logged ghost
        self.send_time = send_time  # experiments.send_time.SendTimeGate: treated fires wait for the preferred hour
        self.suppressions = suppressions  # unsubscribes, hard bounces, complaints read off the e-mail events bus

    # -- one poll ----------------------------------------------------------------------------
    def step(self, batch: int = 200) -> int:
        """Copy new fires, render what waits, send what is due. Returns the rows worked on."""
        fires = self.ledger.fires(self._cursor, batch)
        if fires:
            self.outbox.enqueue(fires, self.channel.name)
            self._cursor = fires[-1].ledger_rowid
        self.reconcile()
        self.refresh_payloads()
        queued = self.outbox.queued(batch)
        for row in queued:
            self.render(row)
        due = self.outbox.due(batch)
        for row in due:
            self.deliver(row)
        return len(fires) + len(queued) + len(due)

    def reconcile(self, every_s: float = 60.0, window_s: float = 3600.0) -> int:
        """Re-read the last hour of fires by time: a rowid can be reused after an erasure deleted
        the ledger's last row, and the rowid cursor alone would then skip the new fire."""
        now = self.clock()
        if now - self._reconciled < every_s:
            return 0
        self._reconciled = now
        found = self.ledger.fires(0, 1_000_000, recorded_since=now - window_s)
        return self.outbox.enqueue(found, self.channel.name) if found else 0

    def refresh_payloads(self, force: bool = False) -> None:
        if self.warehouse_path is None:
            return
        now = self.clock()
        if force or now - self._refreshed >= self.refresh_every_s:
            self._refreshed = now
            n = refresh_from_duckdb(self.warehouse_path, self.payloads)
            log.info("payloads: %s", "warehouse busy or missing, kept the last copy" if n is None else f"{n} copied")
            if self.send_time is not None:
                from ..experiments.send_time import refresh_send_hours

                refresh_send_hours(self.warehouse_path, self.send_time.exposures)

    def render(self, row: Row) -> None:
        found = self.payloads.get(row.customer_id) if row.customer_id else None
        if found is None:
            attempts = self.outbox.waiting(row.fire_key, self.policy.delay(row.attempts + 1, self.rng),
                                           "no_payload: waiting for marts.personalization_payloads")
            if attempts >= self.policy.payload_attempts:
                self.outbox.failed(row.fire_key, "no_payload: the customer has no row in marts.personalization_payloads"
                                   " (not sendable, or the marts were not rebuilt since they appeared)")
            return
        email, payload = found
        try:
            mail = render_fire(row.trigger, email, payload, self.unsubscribe)
        except Exception as exc:  # a payload the template cannot fill: this fire fails, with why
            self.outbox.failed(row.fire_key, f"render: {type(exc).__name__}: {exc}")
            return
        self.outbox.rendered(row.fire_key, mail.recipient, mail.subject, mail.html, mail.text, mail.unsubscribe_url)

    # -- the one place where "send or not" is decided -------------------------------------------
    def decide(self, row: Row) -> str | None:
        """Why this fire must not be sent now, or None. Read right before each attempt, so an
        order the engine read, or an unsubscribe, bounce, complaint, withdrawn consent or purchase
        recorded since the fire stops it (the guard store, and the e-mail events bus as it arrives);
        then an experiment's holdout (no send, a ghost exposure)."""
        if not row.customer_id:
            return "unidentified"
        if self.ledger.ordered(row.trigger, row.cart, row.customer_id, row.window_start):
            return "ordered"
        state = self.guard.state(row.customer_id)
        reason = suppression_reason(state)
        if reason is None and state.last_purchase_at is not None and row.window_start is not None \
                and state.last_purchase_at.timestamp() >= row.window_start:
            reason = "purchased"
        if reason is None and self.suppressions is not None:
            self.suppressions.poll()
            reason = self.suppressions.reason(row.recipient)
        if reason is None and self.holdouts is not None:  # after suppression: suppressed people are in neither arm
            reason = self.holdouts.decide(row.trigger, row.fire_key, row.customer_id)
        return reason

    def deliver(self, row: Row) -> None:
        reason = self.decide(row)
        if reason is not None:
            if row.state == "sending":  # a crash interrupted an earlier attempt: say what we know
                reason += "; an interrupted earlier attempt may have reached the destination"
            self.outbox.suppressed(row.fire_key, reason)
            return
        if self.send_time is not None and row.state == "rendered":  # when, once "whether" is settled
            at = self.send_time.schedule(row.fire_key, row.customer_id, row.decided_at)
            now = self.outbox.clock()
            if at is not None and at > now:
                self.outbox.postpone(row.fire_key, at - now, "send_time: held for the customer's preferred hour "
                                     f"({time.strftime('%Y-%m-%d %H:%M', time.gmtime(at))} UTC)")
                return
        self.outbox.sending(row.fire_key)  # committed BEFORE the send: a crash re-sends the same key
        attempts = row.attempts + 1
        try:
            note = self.channel.send(row)
        except SendError as exc:
            if not exc.retryable:
                self.outbox.failed(row.fire_key, exc.reason)
            elif attempts >= self.policy.max_attempts:
                self.outbox.failed(row.fire_key, f"gave up after {attempts} attempts: {exc.reason}")
            else:
                delay = max(exc.retry_after or 0.0, self.policy.delay(attempts, self.rng))
                self.outbox.postpone(row.fire_key, delay, f"retry {attempts}: {exc.reason}")
            return
        self.outbox.sent(row.fire_key, note)


class AlreadyRunning(RuntimeError):
    pass


def lock_outbox(path: str | Path):
    """An exclusive lock next to the outbox (released by the kernel when the process dies)."""
    lock = open(f"{path}.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise AlreadyRunning(f"another sender is running on {path}: one sender per outbox") from None
    return lock


def run_sender(sender: Sender, stop, poll_interval_s: float = 0.02) -> None:
    """Poll until `stop` (a threading.Event) is set; a busy step polls again at once."""
    try:
        while not stop.is_set():
            if sender.step() == 0:
                stop.wait(poll_interval_s)
    finally:
        sender.channel.close()
        sender.ledger.close()
        if sender.suppressions is not None:
            sender.suppressions.close()
