"""A person's decisions on pairs of records: link (same person) or unlink (two people).

They live in their own warehouse table, ``core.identity_decisions``, written only here (the
CLI), never by a run: a run reads them and obeys them, so a later run, a full rebuild or a
crash of a run's write cannot lose them. The latest decision on a pair wins.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pandas as pd

SCHEMA, TABLE = "core", "identity_decisions"
COLUMNS = ["decision_id", "left_record_id", "right_record_id", "decision", "reason", "decided_by", "decided_at"]
DECISIONS = ("link", "unlink")


def decision_row(left: str, right: str, decision: str, reason: str, decided_by: str) -> pd.DataFrame:
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    if not reason or not reason.strip():
        raise ValueError("a decision needs a reason (--reason): the next steward reads it")
    if left == right:
        raise ValueError(f"a record cannot be linked to or unlinked from itself: {left}")
    lo, hi = sorted((left, right))
    return pd.DataFrame([{"decision_id": uuid.uuid4().hex, "left_record_id": lo, "right_record_id": hi,
                          "decision": decision, "reason": reason.strip(), "decided_by": decided_by,
                          "decided_at": datetime.now(timezone.utc)}])


def record_decision(conn, row: pd.DataFrame) -> None:
    """Append one decision (the table keeps the history; the latest per pair counts)."""
    with conn.transaction():
        conn.insert_frame(SCHEMA, TABLE, row)


def read_decisions(conn) -> pd.DataFrame:
    """The decision in force per pair (the latest), or an empty frame before the first one."""
    if not conn.table_exists(SCHEMA, TABLE):
        return pd.DataFrame(columns=COLUMNS)
    d = conn.query(f"select * from {SCHEMA}.{TABLE}")
    return latest(d)


def latest(d: pd.DataFrame) -> pd.DataFrame:
    if d.empty:
        return d
    d = d.sort_values("decided_at", kind="stable")
    return d.drop_duplicates(["left_record_id", "right_record_id"], keep="last").reset_index(drop=True)
