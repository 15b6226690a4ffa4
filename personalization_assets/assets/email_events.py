"""E-mail engagement: webhook events from their bus and provider export files, into one staging
table, plus the suppression signals (hard bounces, spam reports, unsubscribes) for activation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from ..bus import open_bus, open_quarantine_bus
from ..email_events import EMAIL_EVENT_COLUMNS, Normalized, Rejected
from ..email_events.bus import email_events_bus_url
from ..email_events.files import iter_file, landing_dir, scan
from ..email_events.staging import (
    SUPPRESSION_COLUMNS, events_frame, normalized_frame, staging_events_sql, suppressions, suppressions_sql,
)
from ..resources.warehouse import Warehouse
from .common import (
    WAREHOUSE_POOL, frame_metadata, merge_quarantine, prepare_cursors, prepare_quarantine,
    read_cursor, utc_now, write_cursor,
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


def _file_frame(events: list[Normalized], origin: str, received_at) -> pd.DataFrame:
    """`_raw_frame` of a file's normalized events, all from `origin` and received at `received_at`,
    built a column at a time (`normalized_frame`)."""
    frame = normalized_frame(events, {"origin": [origin] * len(events), "received_at": [received_at] * len(events)})
    frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
    frame["event_key"] = [f"{p}:{e}" for p, e in zip(frame["provider"], frame["provider_event_id"])]
    return frame[RAW_COLUMNS]


def _quarantine_rows(rejected: list[Rejected]) -> pd.DataFrame:
    return pd.DataFrame([{"record_id": r.record_id, "raw_payload": r.raw_payload, "rule": r.rule,
                          "message": r.message} for r in rejected],
                        columns=["record_id", "raw_payload", "rule", "message"])


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
            frame = frame[~frame["event_key"].isin(conn.present("raw.email_events", "event_key", frame["event_key"]))]
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
    tally = {"rows_in": 0, "written": 0, "events": 0, "quarantined": 0}
    by_rule: dict[str, int] = {}
    head, files_loaded, bus_to = None, [], after
    with warehouse.connect() as conn:
        for part in _parts(url, after, q_after, loaded):  # each part commits on its own, with its cursor or ledger row
            written = _store_raw(conn, part.frame, part.rejected, part.cursors, part.ledger)
            tally["events"] += part.events
            tally["rows_in"] += part.events + len(part.rejected)
            tally["written"] += written
            tally["quarantined"] += len(part.rejected)
            for rule, n in part.rejected["rule"].value_counts().items():
                by_rule[rule] = by_rule.get(rule, 0) + int(n)
            files_loaded += list(part.ledger["name"])
            bus_to = part.cursors.get("email_events_bus", {}).get("offset", bus_to)
            if head is None or (head.empty and not part.frame.empty):
                head = part.frame.head(10)
        tally["rows"] = int(conn.scalar("select count(*) from raw.email_events")) if conn.table_exists("raw", "email_events") else 0
    return dg.MaterializeResult(metadata=frame_metadata(
        head if head is not None else _raw_frame([], [], []), **{"dagster/row_count": dg.MetadataValue.int(tally["rows"])},
        rows_in=tally["rows_in"], rows_loaded=tally["written"], quarantined=tally["quarantined"],
        quarantined_by_rule=by_rule, duplicates_dropped=tally["events"] - tally["written"],
        files_loaded=files_loaded, bus_offsets={"from": after, "to": bus_to}))


@dataclass
class _Part:
    """A bounded piece of one load: its rows, rejections, the cursors it moves, the files it completes."""

    frame: pd.DataFrame
    rejected: pd.DataFrame
    events: int
    cursors: dict = field(default_factory=dict)
    ledger: pd.DataFrame = field(default_factory=lambda: FILES_TABLE.iloc[:0])


def _parts(url: str, after: int, q_after: int, loaded: set[str], chunk: int = 50_000) -> Iterator[_Part]:
    """The webhook bus's new events `chunk` at a time (its quarantine with the first), then each
    export file not loaded yet, `chunk` rows at a time (its ledger row with its last chunk)."""
    bus, qbus = open_bus(url), open_quarantine_bus(url)
    try:
        quarantined = []
        while batch := qbus.read(quarantined[-1].offset if quarantined else q_after, limit=5000):
            quarantined.extend(batch)
        rejected = [Rejected(q.event.get("provider", "unknown"), q.event["record_id"], q.event["rule"],
                             q.event["message"], q.event["raw_payload"]) for q in quarantined]
        cursors = {"email_events_bus_quarantine": {"offset": quarantined[-1].offset if quarantined else q_after}}
        offset, first = after, True
        while True:
            records = []
            while len(records) < chunk and (batch := bus.read(records[-1].offset if records else offset, limit=5000)):
                records.extend(batch)
            if not records and not first:
                break
            offset = records[-1].offset if records else offset
            yield _Part(_raw_frame([r.event for r in records], ["webhook"] * len(records), [r.received_at for r in records]),
                        _quarantine_rows(rejected), len(records), {**cursors, "email_events_bus": {"offset": offset}})
            first, rejected, cursors = False, [], {}
            if len(records) < chunk:
                break
    finally:
        bus.close()
        qbus.close()
    now = utc_now()
    for f in scan(landing_dir()):
        if f.key in loaded:
            continue
        pieces = iter_file(f, chunk)
        good, bad = next(pieces)
        events = rejected = 0
        for following in pieces:  # one piece behind: the file's last piece carries its ledger row
            events, rejected = events + len(good), rejected + len(bad)
            yield _Part(_file_frame(good, f"file:{f.name}", now), _quarantine_rows(bad), len(good))
            good, bad = following
        events, rejected = events + len(good), rejected + len(bad)
        ledger = pd.DataFrame([{"name": f.name, "checksum": f.checksum, "events": events, "quarantined": rejected,
                                "loaded_at": now}], columns=FILES_TABLE.columns).astype(FILES_TABLE.dtypes)
        yield _Part(_file_frame(good, f"file:{f.name}", now), _quarantine_rows(bad), len(good), ledger=ledger)


@dg.asset(key=["staging", "email_events"], deps=[raw_email_events], group_name="email_engagement",
          pool=WAREHOUSE_POOL, kinds={"duckdb"}, tags={"pii": "true"})
def staging_email_events(warehouse: Warehouse) -> dg.MaterializeResult:
    """What happened to each e-mail after it was sent: delivered, open, click, bounce (hard) or
    soft_bounce, dropped, spamreport, unsubscribe... in UTC, with the recipient normalized.
    `is_machine` marks Apple MPP opens and scanner clicks: not engagement.

    manual: materialized with raw.email_events by `email_events_sensor`'s runs."""
    with warehouse.connect() as conn:
        conn.prepare_table("staging", "email_events", events_frame([]))
        has_raw = conn.table_exists("raw", "email_events")
        with conn.transaction():
            conn.execute("delete from staging.email_events")
            if has_raw:
                conn.execute(f"insert into staging.email_events ({', '.join(EMAIL_EVENT_COLUMNS)}) {staging_events_sql()}")
        rows_in = int(conn.scalar("select count(*) from raw.email_events")) if has_raw else 0
        staged = _table_facts(conn, "staging.email_events")
        by_type = conn.query("select type, count(*) as n from staging.email_events group by type order by n desc, type")
        machine = int(conn.scalar("select count(*) from staging.email_events where is_machine"))
    return dg.MaterializeResult(metadata=_metadata(
        staged, rows_in=rows_in, duplicates_dropped=rows_in - staged["rows"],
        events_by_type={t: int(n) for t, n in by_type.itertuples(index=False)}, machine_events=machine))


def _table_facts(conn, table: str) -> dict:
    """Row count and first rows of a warehouse table (its materialization's metadata)."""
    return {"rows": int(conn.scalar(f"select count(*) from {table}")), "head": conn.query(f"select * from {table} limit 10")}


def _metadata(facts: dict, **extra) -> dict:
    return frame_metadata(facts["head"], **{"dagster/row_count": dg.MetadataValue.int(facts["rows"])}, **extra)


@dg.asset(key=["staging", "email_suppressions"], deps=[staging_email_events], group_name="email_engagement",
          pool=WAREHOUSE_POOL, kinds={"duckdb"}, tags={"pii": "true"})
def email_suppressions(warehouse: Warehouse) -> dg.MaterializeResult:
    """Addresses the platforms told us never to mail again: hard bounces, spam reports and
    unsubscribes (email, reason, occurred_at: the first time). Soft bounces are not here.

    manual: materialized with raw.email_events by `email_events_sensor`'s runs."""
    with warehouse.connect() as conn:
        conn.prepare_table("staging", "email_suppressions", suppressions(events_frame([])))
        has_events = conn.table_exists("staging", "email_events")
        with conn.transaction():
            conn.execute("delete from staging.email_suppressions")
            if has_events:
                conn.execute(f"insert into staging.email_suppressions ({', '.join(SUPPRESSION_COLUMNS)}) {suppressions_sql()}")
        facts = _table_facts(conn, "staging.email_suppressions")
        by_reason = conn.query("select reason, count(*) as n from staging.email_suppressions group by reason order by n desc, reason")
    return dg.MaterializeResult(metadata=_metadata(facts, by_reason={r: int(n) for r, n in by_reason.itertuples(index=False)}))


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
