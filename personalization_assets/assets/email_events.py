"""E-mail engagement: webhook events from their bus and provider export files, into one staging
table, plus the suppression signals (hard bounces, spam reports, unsubscribes) for activation."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd

from ..bus import open_bus, open_quarantine_bus
from ..email_events import EMAIL_EVENT_COLUMNS, Rejected
from ..email_events.bus import email_events_bus_url
from ..email_events.files import landing_dir, load_file, scan
from ..email_events.staging import events_frame, flag_scanner_clicks, suppressions
from ..resources.warehouse import Warehouse
from .common import (
    WAREHOUSE_POOL, frame_metadata, merge_quarantine, prepare_cursors, prepare_quarantine,
    read_cursor, read_table, utc_now, write_cursor,
)

SOURCE = "email_events"  # quarantine.email_events
RAW_COLUMNS = ["event_key", "origin", "received_at", *EMAIL_EVENT_COLUMNS]
FILES_TABLE = pd.DataFrame({"name": pd.Series(dtype=object), "checksum": pd.Series(dtype=object),
                            "events": pd.Series(dtype="int64"), "quarantined": pd.Series(dtype="int64"),
                            "loaded_at": pd.Series(dtype="datetime64[ns, UTC]")})


def _raw_frame(records: list[dict], origin: list[str], received_at: list) -> pd.DataFrame:
    """Typed raw rows; the first copy of each provider event wins (webhook retries, re-sent files)."""
    frame = events_frame([{**r, "origin": o, "received_at": t} for r, o, t in zip(records, origin, received_at)],
                         extra=["origin", "received_at"])
    frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
    frame["event_key"] = [f"{p}:{e}" for p, e in zip(frame["provider"], frame["provider_event_id"])]
    return frame[RAW_COLUMNS]


def _quarantine_rows(rejected: list[Rejected]) -> pd.DataFrame:
    return pd.DataFrame([{"record_id": r.record_id, "raw_payload": r.raw_payload, "rule": r.rule,
                          "message": r.message} for r in rejected],
                        columns=["record_id", "raw_payload", "rule", "message"])


def _known_keys(conn, keys: pd.Series, chunk: int = 1_000) -> set[str]:
    """The batch's event keys already in raw.email_events: looked up per batch, so a load's cost
    and memory follow the batch, not the table."""
    distinct = list(dict.fromkeys(keys))
    known: set[str] = set()
    for start in range(0, len(distinct), chunk):
        part = distinct[start:start + chunk]
        known.update(conn.query(f"select event_key from raw.email_events where event_key in"
                                f" ({', '.join('?' for _ in part)})", part)["event_key"])
    return known


def _store_raw(conn, frame: pd.DataFrame, rejected: pd.DataFrame, cursors: dict, files: pd.DataFrame | None = None) -> int:
    """Rows, quarantine and cursors/file ledger in one transaction; known events are not re-inserted."""
    prepare_cursors(conn)
    prepare_quarantine(conn, SOURCE)
    if not frame.empty:
        conn.prepare_table("raw", "email_events", frame)
    if files is not None:
        conn.prepare_table("ops", "email_files", FILES_TABLE)
    with conn.transaction():
        if not frame.empty:
            frame = frame[~frame["event_key"].isin(_known_keys(conn, frame["event_key"]))]
            if not frame.empty:
                conn.insert_frame("raw", "email_events", frame)
        merge_quarantine(conn, SOURCE, rejected)
        for name, value in cursors.items():
            write_cursor(conn, name, value)
        if files is not None and not files.empty:
            conn.insert_frame("ops", "email_files", files)
    return len(frame)


@dg.asset(key=["raw", "email_events"], group_name="email_engagement", pool=WAREHOUSE_POOL,
          kinds={"sqlite", "duckdb"}, tags={"pii": "true"})
def raw_email_events(warehouse: Warehouse) -> dg.MaterializeResult:
    """E-mail platform events (SendGrid, Mailgun, generic webhooks and export files), normalized,
    one row per provider event: a provider's retries and re-dropped files are stored once.

    manual: loaded by `email_events_sensor`, one run per export file or webhook batch (the landing
    folder and the bus are outside the graph)."""
    url = email_events_bus_url()
    with warehouse.connect() as conn:
        after = int((read_cursor(conn, "email_events_bus") or {}).get("offset", 0))
        q_after = int((read_cursor(conn, "email_events_bus_quarantine") or {}).get("offset", 0))
        loaded = set() if not conn.table_exists("ops", "email_files") else {
            f"{n}@{c}" for n, c in conn.query("select name, checksum from ops.email_files").itertuples(index=False)}
    bus, qbus = open_bus(url), open_quarantine_bus(url)
    try:
        records, quarantined = [], []
        while batch := bus.read(records[-1].offset if records else after, limit=5000):
            records.extend(batch)
        while batch := qbus.read(quarantined[-1].offset if quarantined else q_after, limit=5000):
            quarantined.extend(batch)
    finally:
        bus.close()
        qbus.close()
    events = [r.event for r in records]
    origins, received = ["webhook"] * len(events), [r.received_at for r in records]
    rejected = [Rejected(q.event.get("provider", "unknown"), q.event["record_id"], q.event["rule"],
                         q.event["message"], q.event["raw_payload"]) for q in quarantined]
    files = scan(landing_dir())
    ledger = []
    now = utc_now()
    for f in files:
        if f.key in loaded:
            continue
        good, bad = load_file(f)
        events += [g.to_record() for g in good]
        origins += [f"file:{f.name}"] * len(good)
        received += [now] * len(good)
        rejected += bad
        ledger.append({"name": f.name, "checksum": f.checksum, "events": len(good), "quarantined": len(bad), "loaded_at": now})
    frame = _raw_frame(events, origins, received)
    rows = _quarantine_rows(rejected)
    cursors = {"email_events_bus": {"offset": records[-1].offset if records else after},
               "email_events_bus_quarantine": {"offset": quarantined[-1].offset if quarantined else q_after}}
    with warehouse.connect() as conn:
        written = _store_raw(conn, frame, rows, cursors, pd.DataFrame(ledger, columns=FILES_TABLE.columns).astype(FILES_TABLE.dtypes))
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, rows_in=len(events) + len(rejected), rows_loaded=written, quarantined=len(rows),
        quarantined_by_rule=rows["rule"].value_counts().to_dict(), duplicates_dropped=len(events) - written,
        files_loaded=[f["name"] for f in ledger], bus_offsets={"from": after, "to": cursors["email_events_bus"]["offset"]}))


@dg.asset(key=["staging", "email_events"], deps=[raw_email_events], group_name="email_engagement",
          pool=WAREHOUSE_POOL, kinds={"duckdb"}, tags={"pii": "true"})
def staging_email_events(warehouse: Warehouse) -> dg.MaterializeResult:
    """What happened to each e-mail after it was sent: delivered, open, click, bounce (hard) or
    soft_bounce, dropped, spamreport, unsubscribe... in UTC, with the recipient normalized.
    `is_machine` marks Apple MPP opens and scanner clicks: not engagement.

    manual: materialized with raw.email_events by `email_events_sensor`'s runs."""
    with warehouse.connect() as conn:
        raw = read_table(conn, "raw", "email_events", RAW_COLUMNS)
        frame = events_frame(raw.sort_values(["received_at", "event_key"])[EMAIL_EVENT_COLUMNS].to_dict("records")) if len(raw) else events_frame([])
        frame = flag_scanner_clicks(frame)
        conn.prepare_table("staging", "email_events", frame)
        with conn.transaction():
            conn.replace_frame("staging", "email_events", frame)
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, rows_in=len(raw), duplicates_dropped=len(raw) - len(frame),
        events_by_type=frame["type"].value_counts().to_dict(), machine_events=int(frame["is_machine"].sum())))


@dg.asset(key=["staging", "email_suppressions"], deps=[staging_email_events], group_name="email_engagement",
          pool=WAREHOUSE_POOL, kinds={"duckdb"}, tags={"pii": "true"})
def email_suppressions(warehouse: Warehouse) -> dg.MaterializeResult:
    """Addresses the platforms told us never to mail again: hard bounces, spam reports and
    unsubscribes (email, reason, occurred_at: the first time). Soft bounces are not here.

    manual: materialized with raw.email_events by `email_events_sensor`'s runs."""
    with warehouse.connect() as conn:
        events = read_table(conn, "staging", "email_events", EMAIL_EVENT_COLUMNS)
        frame = suppressions(events_frame(events.to_dict("records")) if len(events) else events_frame([]))
        conn.prepare_table("staging", "email_suppressions", frame)
        with conn.transaction():
            conn.replace_frame("staging", "email_suppressions", frame)
    return dg.MaterializeResult(metadata=frame_metadata(frame, by_reason=frame["reason"].value_counts().to_dict()))


email_events_job = dg.define_asset_job(
    "email_events", selection=dg.AssetSelection.assets(raw_email_events, staging_email_events, email_suppressions),
    executor_def=dg.in_process_executor, description="E-mail webhook events and export files into staging.")


@dg.sensor(job=email_events_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="One run per new export file in the landing folder (name + checksum) and per "
                       "batch of webhook events waiting on the e-mail events bus.")
def email_events_sensor(context: dg.SensorEvaluationContext):
    seen = json.loads(context.cursor) if context.cursor else {"files": {}, "bus": 0}
    folder = landing_dir()
    files = scan(folder)
    bus = open_bus(email_events_bus_url())
    try:
        head = bus.last_offset()
    finally:
        bus.close()
    new = [f for f in files if seen["files"].get(f.name) != f.checksum]
    requests = [dg.RunRequest(run_key=f"file:{f.key}", tags={"email/file": f.name, "email/checksum": f.checksum[:16]})
                for f in new]
    if head > seen["bus"]:
        requests.append(dg.RunRequest(run_key=f"bus:{seen['bus'] + 1}-{head}"))
    if not requests:
        unknown = [f.name for f in files if f.provider is None]
        return dg.SkipReason(f"{len(files)} export file(s) in {folder}, all loaded; no webhook events after "
                             f"bus offset {seen['bus']}" + (f"; unknown provider: {unknown}" if unknown else ""))
    cursor = {"files": {**seen["files"], **{f.name: f.checksum for f in new}}, "bus": max(head, seen["bus"])}
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))


defs = dg.Definitions(assets=[raw_email_events, staging_email_events, email_suppressions],
                      jobs=[email_events_job], sensors=[email_events_sensor])
