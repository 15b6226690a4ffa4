"""The sync engine: diff against the last acknowledged state, send in batches, commit per batch.

Per sync (destination x segment x mode):
1. the desired rows come from SQL over the marts (`sources`), minus everyone on the suppression
   list (by customer_key, e-mail or hashed e-mail): a sync can never reach an unsubscribed person;
2. the plan is the difference with `activation.sync_state`, computed in the warehouse: new rows
   are `added`, rows whose payload hash changed are `changed`, and (mirror mode) rows no longer
   desired are `removed`; events mode sends each new event once. Unchanged rows are not resent;
3. batches go out in a fixed order; after each acknowledged batch the state of its rows is
   committed in one transaction. A sync killed at any point re-plans exactly what was not
   acknowledged, with the same idempotency keys (destination, segment, row, state version), so a
   receiver that saw a batch whose answer was lost drops the copy: each change lands once;
4. refused rows go to `activation.sync_failed_rows` (error, attempts); retryable ones are retried
   within the run, and every later run plans them again until they succeed or reach
   `max_attempts` with the same payload;
5. the counts go to `activation.sync_results`. A dry run stops after the plan.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import pandas as pd

from ..marts.inputs import Sql
from . import tables
from .model import ADD, CHANGE, EVENT, EVENTS, MIRROR, MODES, REMOVE, Destination, RowResult, SyncRow

STATE, FAILED, RESULTS = "activation.sync_state", "activation.sync_failed_rows", "activation.sync_results"
PLAN_COLUMNS = ["row_key", "customer_key", "email", "op", "payload", "payload_hash", "version"]


@dataclass(frozen=True)
class SyncSpec:
    destination: Destination
    segment: str
    mode: str
    source: tuple[str, int]  # (sql with `?` for the segment, number of `?`)
    max_attempts: int = 5
    retry_rounds: int = 2

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"sync mode must be one of {MODES}, not {self.mode!r}")
        if self.mode not in self.destination.modes:
            raise ValueError(f"destination {self.destination.name!r} does not support mode {self.mode!r} "
                             f"(it supports {sorted(self.destination.modes)})")


@dataclass
class SyncReport:
    sync_id: str
    destination: str
    segment: str
    mode: str
    dry_run: bool
    planned: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    batches: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        source = self.planned if self.dry_run else self.delivered
        return {"added": source.get(ADD, 0), "changed": source.get(CHANGE, 0),
                "removed": source.get(REMOVE, 0), "events": source.get(EVENT, 0), "failed": self.failed}


def idempotency_key(destination: str, segment: str, row_key: str, version: int) -> str:
    return hashlib.sha256(f"{destination}|{segment}|{row_key}|{version}".encode()).hexdigest()[:32]


def batch_key(destination: str, rows: list[SyncRow]) -> str:
    joined = "|".join(r.idempotency_key for r in rows)
    return hashlib.sha256(f"{destination}|{joined}".encode()).hexdigest()[:32]


def _suppressed_filter(conn: Sql, alias: str) -> str:
    if not conn.table_exists("activation", "suppression"):
        return ""
    hashed = tables.sha256_sql(conn, f"{alias}.email")
    return (f"\n  and not exists (select 1 from activation.suppression s where s.customer_key = {alias}.customer_key)"
            f"\n  and not exists (select 1 from activation.suppression s where s.email = {alias}.email)"
            f"\n  and not exists (select 1 from activation.suppression s where s.email_sha256 = {hashed})")


PLAN = "activation.sync_plan"  # the rows the running sync sends (a table: DuckDB reads it through a second connection)
PLAN_READ_ROWS = 20_000  # plan rows read at a time (a batch is gathered from as many reads as it needs)


def plan(conn: Sql, spec: SyncSpec) -> None:
    """The rows to send into table PLAN (the sync's scratch table, replaced by the next)."""
    tables.prepare(conn, "sync_state", "sync_failed_rows", "sync_results")
    sql, n = spec.source
    dest, seg = spec.destination.name, spec.segment
    conn.execute(f"""create or replace temporary table act_desired as
select d.row_key, d.customer_key, d.email, d.payload, md5(d.payload) as payload_hash
from ({sql}) d
where d.row_key is not null{_suppressed_filter(conn, 'd')}
qualify row_number() over (partition by d.row_key order by d.payload) = 1""", [seg] * n)
    op_new = f"'{EVENT}'" if spec.mode == EVENTS else f"case when s.row_key is null or not s.present then '{ADD}' else '{CHANGE}' end"
    changed = "" if spec.mode == EVENTS else " or s.payload_hash <> d.payload_hash"
    diff = f"""select d.row_key, d.customer_key, d.email, {op_new} as op, d.payload, d.payload_hash,
       coalesce(s.version, 0) + 1 as version
from act_desired d left join {STATE} s on s.destination = ? and s.segment = ? and s.row_key = d.row_key
where s.row_key is null or not s.present{changed}"""
    params: list = [dest, seg]
    if spec.mode == MIRROR:
        diff += f"""
union all
select s.row_key, s.customer_key, s.email, '{REMOVE}', '{{}}', cast(null as varchar), s.version + 1
from {STATE} s where s.destination = ? and s.segment = ? and s.present
  and not exists (select 1 from act_desired d where d.row_key = s.row_key)"""
        params += [dest, seg]
    # A row that failed max_attempts times with this same payload waits for a new payload.
    conn.execute(f"""create or replace table {PLAN} as select p.* from ({diff}) p
where not exists (select 1 from {FAILED} f where f.destination = ? and f.segment = ? and f.row_key = p.row_key
                  and f.attempts >= ? and coalesce(f.payload_hash, '') = coalesce(p.payload_hash, ''))""",
                 params + [dest, seg, spec.max_attempts])


def planned_batches(conn, batch_size: int) -> Iterator[pd.DataFrame]:
    """PLAN's rows in send order (op, row_key), `batch_size` at a time, read PLAN_READ_ROWS at a
    time: the process holds a batch and a read, not every row of a first sync (each member's
    payload)."""
    from ..quality.table_checks import read_chunks_aside

    held = pd.DataFrame(columns=PLAN_COLUMNS)
    # read aside: each batch's commit goes on `conn` while the plan streams
    for chunk in read_chunks_aside(conn, f"select * from {PLAN} order by op, row_key", rows=PLAN_READ_ROWS):
        held = pd.concat([held, chunk], ignore_index=True) if len(held) else chunk.reset_index(drop=True)
        while len(held) >= batch_size:
            yield held.iloc[:batch_size]
            held = held.iloc[batch_size:].reset_index(drop=True)
    if len(held):
        yield held


def _rows(frame: pd.DataFrame, spec: SyncSpec) -> list[SyncRow]:
    dest = spec.destination.name
    return [SyncRow(row_key=r.row_key, customer_key=r.customer_key, email=r.email, op=r.op, segment=spec.segment,
                    payload=json.loads(r.payload) if isinstance(r.payload, str) else {},
                    idempotency_key=idempotency_key(dest, spec.segment, r.row_key, int(r.version)))
            for r in frame.itertuples(index=False)]


def _commit(conn, spec: SyncSpec, planned: pd.DataFrame, results: list[RowResult], now: datetime,
            failing: set[str]) -> None:
    """State for acknowledged rows, failed-rows entries for the rest: one transaction per batch.
    `failing` holds the row keys currently in the failed-rows table (kept up to date here)."""
    ok = {r.row_key for r in results if r.ok}
    errors = {r.row_key: r for r in results if not r.ok}
    dest, seg = spec.destination.name, spec.segment
    acked = planned[planned["row_key"].isin(ok)]
    state = pd.DataFrame({
        "destination": dest, "segment": seg, "row_key": acked["row_key"], "customer_key": acked["customer_key"],
        "email": acked["email"].where(acked["op"] != REMOVE, None), "payload_hash": acked["payload_hash"],
        "version": acked["version"].astype("int64"), "present": acked["op"] != REMOVE,
        "synced_at": pd.Timestamp(now)})
    bad = planned[planned["row_key"].isin(errors)]
    previous = pd.DataFrame(columns=["row_key", "attempts", "first_failed_at"])
    if len(bad):
        keys = list(bad["row_key"])
        marks = ", ".join("?" for _ in keys)
        previous = conn.query(f"select row_key, attempts, first_failed_at from {FAILED} where destination = ? "
                              f"and segment = ? and row_key in ({marks})", [dest, seg, *keys])
    prior = previous.set_index("row_key")
    failed = pd.DataFrame({
        "destination": dest, "segment": seg, "row_key": bad["row_key"], "customer_key": bad["customer_key"],
        "email": bad["email"], "op": bad["op"], "payload": bad["payload"], "payload_hash": bad["payload_hash"],
        "error": [errors[k].error for k in bad["row_key"]],
        "retryable": [errors[k].retryable for k in bad["row_key"]],
        "attempts": [int(prior.loc[k, "attempts"]) + 1 if k in prior.index else 1 for k in bad["row_key"]],
        "first_failed_at": [prior.loc[k, "first_failed_at"] if k in prior.index else now for k in bad["row_key"]],
        "last_failed_at": pd.Timestamp(now)})
    if len(failed):
        failed["first_failed_at"] = pd.to_datetime(failed["first_failed_at"], utc=True)
    with conn.transaction():
        conn.upsert_frame("activation", "sync_state", state, ["destination", "segment", "row_key"])
        recovered = sorted(failing & ok)
        if recovered:
            marks = ", ".join("?" for _ in recovered)
            conn.execute(f"delete from {FAILED} where destination = ? and segment = ? and row_key in ({marks})",
                         [dest, seg, *recovered])
        conn.upsert_frame("activation", "sync_failed_rows", failed, ["destination", "segment", "row_key"])
    failing.difference_update(ok)
    failing.update(errors)


def _send(conn, spec: SyncSpec, planned: pd.DataFrame, report: SyncReport, now: Callable[[], datetime],
          failing: set[str]) -> list[str]:
    """Send `planned` in batches; returns the row keys that failed but may be retried."""
    dest = spec.destination
    retry: list[str] = []
    for start in range(0, len(planned), dest.batch_size):
        chunk = planned.iloc[start:start + dest.batch_size]
        rows = _rows(chunk, spec)
        results = dest.send(rows, batch_key(dest.name, rows))
        if [r.row_key for r in results] != [r.row_key for r in rows]:
            raise RuntimeError(f"destination {dest.name!r} answered {len(results)} results for {len(rows)} rows")
        _commit(conn, spec, chunk, results, now(), failing)
        report.batches += 1
        ops = dict(zip(chunk["row_key"], chunk["op"]))
        for r in results:
            if r.ok:
                report.delivered[ops[r.row_key]] = report.delivered.get(ops[r.row_key], 0) + 1
            elif r.retryable:
                retry.append(r.row_key)
    return retry


def run_sync(conn, spec: SyncSpec, *, dry_run: bool = False, sync_id: str | None = None,
             now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> SyncReport:
    started, clock = now(), time.perf_counter()
    report = SyncReport(sync_id or uuid.uuid4().hex, spec.destination.name, spec.segment, spec.mode, dry_run)
    try:
        plan(conn, spec)
        report.planned = {str(op): int(n) for op, n in conn.rows(f"select op, count(*) from {PLAN} group by op")}
        if dry_run:
            report.seconds = time.perf_counter() - clock
            return report
        failing = set(conn.query(f"select row_key from {FAILED} where destination = ? and segment = ?",
                                 [spec.destination.name, spec.segment])["row_key"])
        again = []  # the rows refused with a retryable error: few
        for batch in planned_batches(conn, spec.destination.batch_size):
            retry = _send(conn, spec, batch, report, now, failing)
            if retry:
                again.append(batch[batch["row_key"].isin(retry)])
    finally:
        conn.execute(f"drop table if exists {PLAN}")
    planned = pd.concat(again, ignore_index=True) if again else pd.DataFrame(columns=PLAN_COLUMNS)
    retry = list(planned["row_key"])
    for _ in range(spec.retry_rounds):
        if not retry:
            break
        retry = _send(conn, spec, planned[planned["row_key"].isin(retry)], report, now, failing)
    report.failed = int(conn.scalar(f"select count(*) from {FAILED} where destination = ? and segment = ? "
                                    "and last_failed_at >= ?", [spec.destination.name, spec.segment, started]))
    report.seconds = time.perf_counter() - clock
    write_results(conn, report, started, now())
    return report


def write_results(conn, report: SyncReport, started: datetime, finished: datetime) -> None:
    """One row per non-zero outcome: a sync that found nothing to do leaves no trace."""
    counts = {k: v for k, v in report.counts().items() if v}
    if not counts:
        return
    frame = pd.DataFrame({"sync_id": report.sync_id, "destination": report.destination, "segment": report.segment,
                          "mode": report.mode, "outcome": list(counts), "rows": pd.array(list(counts.values()), dtype="int64"),
                          "started_at": pd.Timestamp(started), "finished_at": pd.Timestamp(finished)})
    with conn.transaction():
        conn.insert_frame("activation", "sync_results", frame)
