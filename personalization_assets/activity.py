"""What the real-time services did in a time window, read from their own SQLite stores: the
trigger engine's fire ledger and the sender's outbox.

Read-only, and safe while the services write (WAL readers never block the writer). A window is
[since, until) in epoch seconds, so consecutive windows count every row once; `until` should lag
the clock by a second or two, because a row is stamped just before its transaction commits.
The sensor `activation_stream_sensor` reports these figures as asset observations.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from . import settings


def ledger_path() -> Path:
    """Where `personalization triggers` keeps its fires (and `personalization deliver` reads them)."""
    return settings.data_dir() / "triggers.sqlite"


def outbox_path() -> Path:
    """Where `personalization deliver` keeps its outbox by default: next to the ledger."""
    return ledger_path().with_name("outbox.sqlite")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def _rows(path: Path, table: str, sql: str, params: tuple) -> list[tuple] | None:
    """The rows of `sql`, or None when the store or its table does not exist yet (service never ran)."""
    if not path.exists():
        return None
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
        if not conn.execute("select 1 from sqlite_master where type = 'table' and name = ?", (table,)).fetchone():
            return None
        return conn.execute(sql, params).fetchall()


def fires_between(path: str | Path, since: float, until: float) -> dict | None:
    """Decisions the engine recorded in [since, until): counts per outcome and per trigger, and the
    time from timer expiry (`due_at`) to the decision. None when nothing was recorded."""
    rows = _rows(Path(path), "trigger_fires",
                 "select trigger, outcome, due_at, decided_at from trigger_fires"
                 " where recorded_at >= ? and recorded_at < ?", (since, until))
    if not rows:
        return None
    by = {}
    for trigger, outcome, _, _ in rows:
        by[f"{trigger}:{outcome}"] = by.get(f"{trigger}:{outcome}", 0) + 1
    lags = [decided - due for _, _, due, decided in rows if due is not None and decided is not None]
    return {"decisions": len(rows), "fires": sum(1 for r in rows if r[1] == "fire"),
            "suppressed": sum(1 for r in rows if r[1] == "suppress"), "by_trigger_outcome": by,
            "expiry_to_decision_p50_s": percentile(lags, 50), "expiry_to_decision_p95_s": percentile(lags, 95)}


def sends_between(path: str | Path, since: float, until: float) -> dict | None:
    """What the sender's outbox did in [since, until): rows that reached each state, the reasons of
    failed and suppressed ones, and the time from timer expiry (`ready_at`) and from the fire
    (`decided_at`) to the destination accepting the message. None when nothing changed."""
    rows = _rows(Path(path), "outbox",
                 "select state, reason, ready_at, decided_at, sent_at from outbox"
                 " where updated_at >= ? and updated_at < ?", (since, until))
    if not rows:
        return None
    states, reasons = {}, {}
    for state, reason, *_ in rows:
        states[state] = states.get(state, 0) + 1
        if state in ("failed", "suppressed"):
            reasons[f"{state}:{reason}"] = reasons.get(f"{state}:{reason}", 0) + 1
    sent = [(ready, decided, at) for state, _, ready, decided, at in rows if state == "sent" and at is not None]
    expiry = [at - ready for ready, _, at in sent if ready is not None]
    fire = [at - decided for _, decided, at in sent if decided is not None]
    return {"changed": len(rows), "sent": len(sent), "failed": states.get("failed", 0),
            "suppressed": states.get("suppressed", 0), "by_state": states, "by_reason": reasons,
            "expiry_to_sent_p50_s": percentile(expiry, 50), "expiry_to_sent_p95_s": percentile(expiry, 95),
            "fire_to_sent_p50_s": percentile(fire, 50), "fire_to_sent_p95_s": percentile(fire, 95)}
