"""Raw layer: one asset per source, each incremental with its cursor stored in the warehouse.

Rows, rejections and cursor move in one transaction, so a failed load leaves neither half-written
rows nor a cursor that skips data. Loads are upserts on the source's key, so re-running (and
re-reading the look-back window, `sources/incremental.py`) never duplicates. A row that cannot be
loaded goes to `quarantine.<source>` with its reason; the good rows load without it.
"""

import contextlib
import json
import operator
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd

from ..heap import releasing
from ..resources.sources import CrmDatabase, EventBusResource, OrdersApi
from ..resources.warehouse import Warehouse, WarehouseConnection
from ..sources import SourceError
from ..sources.crm import TEXT_COLUMNS as CRM_TEXT_COLUMNS, CrmCursor, screen_customers
from ..sources.incremental import DUPLICATE_KEY, WINDOW, Screened
from ..sources.orders_api import ORDER_COLUMNS, screen_orders
from ..staging.common import SOURCE_FORMATS, json_text
from ..warehouse import column_types
from .common import (
    WAREHOUSE_POOL, frame_metadata, merge_quarantine, prepare_cursors, prepare_quarantine,
    read_cursor, utc_now, write_cursor,
)

# Sources land at least daily; warn after 2 h without a load, fail after 26 h.
RAW_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=2))

EVENT_COLUMNS = ["message_id", "bus_offset", "received_at", "payload"]
EVENTS_CHUNK = 50_000  # bus records decoded, checked and written at a time by raw.events
ORDERS_CHUNK = 10_000  # API orders screened and written at a time by raw.shop_orders
__all__ = ["EVENT_COLUMNS", "ORDER_COLUMNS", "crm_customers", "events", "shop_orders", "split_orders"]


def _fail(exc: SourceError, kept: str = "cursor not moved, nothing written") -> dg.Failure:
    return dg.Failure(description=f"{exc} ({kept})", metadata={"source": exc.source, "cause": exc.cause})


def _screen_metadata(rejected: pd.DataFrame, superseded: int) -> dict:
    return {"quarantined": len(rejected),
            "quarantined_by_rule": rejected["rule"].value_counts().to_dict() if len(rejected) else {},
            "superseded_versions": superseded}


def _reset(stored: datetime | None, watermark: datetime | None) -> dict:
    """Metadata saying a stored cursor from the future was dropped (the load read everything)."""
    if stored is None or stored == watermark:
        return {}
    return {"cursor_reset": f"stored cursor {stored.isoformat()} was later than now - "
                            f"{WINDOW.safety_lag}: everything was read again"}


def _text_columns(conn: WarehouseConnection, schema: str, table: str, columns: list[str]) -> None:
    """Make `columns` of an existing table text (they held parsed values before, e.g. consent
    flags read as booleans). DDL, before the transaction; a step cut short is resumed next time."""
    if not conn.table_exists(schema, table):
        return
    types = column_types(conn, schema, table)
    target = f"{schema}.{table}"
    for column in columns:
        spare = f"{column}__text"
        if column in types and spare not in types:
            if types[column] in ("varchar", "text") or types[column].startswith(("character", "varchar", "text")):
                continue
            conn.execute(f"alter table {target} add column {spare} varchar")
            types[spare] = "varchar"
        if spare in types:
            if column in types:
                conn.execute(f"update {target} set {spare} = lower(cast({column} as varchar))")
                conn.execute(f"alter table {target} drop column {column}")
            conn.execute(f"alter table {target} rename column {spare} to {column}")


@dg.asset(key=["raw", "crm_customers"], group_name="ingestion", pool=WAREHOUSE_POOL,
          kinds={"sql", "duckdb"}, tags={"pii": "true"}, freshness_policy=RAW_FRESHNESS)
@releasing
def crm_customers(crm: CrmDatabase, warehouse: Warehouse) -> dg.MaterializeResult:
    """Customer records as the CRM holds them: times in UTC, every other value as stored, as text
    (consent flags too: staging reads them). Loaded incrementally on `updated_at`.

    manual: pulled by the schedule `daily_profiles` (03:00 UTC) or on demand; no parent in the graph
    tells when the CRM changed, and each pull scans the source."""
    now = utc_now()
    with warehouse.connect() as conn:
        stored = CrmCursor.from_json(read_cursor(conn, "crm_customers")).updated_at
    watermark = WINDOW.trusted(stored, now)
    read_from = WINDOW.read_from(watermark)
    try:
        extracted = crm.extract_customers(read_from)
    except SourceError as exc:
        raise _fail(exc) from exc
    fmt = SOURCE_FORMATS["crm"]
    screened = screen_customers(extracted, now=now, day_first=fmt.day_first, assume_tz=fmt.assume_tz)
    frame = screened.rows
    new_cursor = CrmCursor(WINDOW.advance(watermark, screened.newest, now))
    with warehouse.connect() as conn:
        prepare_cursors(conn)
        prepare_quarantine(conn, "crm_customers")
        _text_columns(conn, "raw", "crm_customers", CRM_TEXT_COLUMNS)
        if not frame.empty:
            conn.prepare_table("raw", "crm_customers", frame)
    with warehouse.connect() as conn, conn.transaction():
        written = conn.upsert_frame("raw", "crm_customers", frame, ["customer_id"])
        merge_quarantine(conn, "crm_customers", screened.rejected,
                         checked_ids="crm:" + frame["customer_id"].astype(str), raw_layer=True)
        write_cursor(conn, "crm_customers", new_cursor.to_json())
        total = (conn.scalar("select count(*) from raw.crm_customers")
                 if conn.table_exists("raw", "crm_customers") else 0)
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, rows_read=len(extracted), rows_loaded=written, rows_total=int(total or 0), **_screen_metadata(screened.rejected, screened.superseded),
        read_from=read_from.isoformat() if read_from else None, cursor=new_cursor.to_json(),
        **_reset(stored, watermark)))


def split_orders(orders: list, *, now: datetime | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Orders that can be loaded (latest version per order_id), and the rest with a reason
    (`sources.orders_api.screen_orders`): they go to quarantine, not away."""
    screened = screen_orders(orders, now=now or utc_now())
    return screened.rows.reset_index(drop=True), screened.rejected


def _unchanged(conn: WarehouseConnection, frame: pd.DataFrame) -> set[str]:
    """Ids of orders stored with exactly this payload: reading them again (the look-back window)
    must not restamp their `loaded_at` and move them to today's partition."""
    if frame.empty or not conn.table_exists("raw", "shop_orders"):
        return set()
    incoming = dict(zip(frame["order_id"], frame["payload"]))
    return {o for o, p in _stored_payloads(conn, list(incoming)) if incoming.get(o) == p}


def _stored_payloads(conn: WarehouseConnection, ids: list[str]) -> Iterator[tuple[str, str]]:
    """(order_id, payload) of the stored orders among `ids`."""
    if not ids:  # the first chunk of a load: nothing earlier to look up, perhaps no table yet
        return iter(())
    found = conn.query_in("select order_id, payload from raw.shop_orders where order_id in ({values})", ids)
    return zip(found["order_id"], found["payload"])


def _has_rows(conn: WarehouseConnection, schema: str, table: str, where: str = "true") -> bool:
    return conn.table_exists(schema, table) and bool(
        conn.rows(f"select 1 from {schema}.{table} where {where} limit 1"))


def _watermark(value: str | None) -> datetime | None:
    return pd.Timestamp(value).tz_convert("UTC").to_pydatetime() if value else None


@dataclass
class _OrdersLoad:
    """A load of raw.shop_orders so far: each chunk commits its rows, rejections and cursor."""
    watermark: datetime | None  # the trusted stored watermark
    now: datetime
    stored_before: bool = True  # raw.shop_orders held orders when the load began
    open_quarantine: bool = True  # quarantine.shop_orders has open rows (that a loaded order releases)
    loaded_ids: set[str] = field(default_factory=set)  # the orders committed (latest versions), by id
    keyless_seen: Counter = field(default_factory=Counter)  # keyless orders per content id so far
    newest: datetime | None = None
    in_order: bool = True  # every chunk's orders at or after the previous chunks' newest
    cursor: dict | None = None
    chunks: int = 0  # committed
    written: int = 0  # of them changed, so written
    unchanged: int = 0
    received: int = 0
    superseded: int = 0
    rejected: list[pd.DataFrame] = field(default_factory=list)
    preview: pd.DataFrame | None = None

    def next_cursor(self, last: bool) -> dict | None:
        """The cursor a chunk commits: the newest order so far while the listing comes in
        `updated_at` order (a later page holds nothing older), else only with the last chunk."""
        if not (last or self.in_order):
            return None
        watermark = WINDOW.advance(self.watermark, self.newest, self.now)
        return {"updated_since": watermark.isoformat() if watermark else None}


def _screen_chunk(conn: WarehouseConnection, chunk: list, load: _OrdersLoad) -> Screened:
    """A chunk screened as if the whole load were (`screen_orders`): an order that an earlier
    chunk committed is screened again with that version first, so the latest version wins,
    contradicting versions are quarantined together and a repeated read is no change."""
    keys = {str(o.get("order_id")) for o in chunk if isinstance(o, dict) and o.get("order_id") is not None}
    earlier = [json.loads(p) for _, p in _stored_payloads(conn, sorted(keys & load.loaded_ids))]
    screened = screen_orders(earlier + chunk, now=load.now, keyless_seen=load.keyless_seen)
    if screened.newest is not None:
        load.in_order &= load.newest is None or screened.oldest >= load.newest
        load.newest = max(filter(None, [load.newest, screened.newest]))
    return screened


def _write_chunk(conn: WarehouseConnection, chunk: list, load: _OrdersLoad, last: bool) -> None:
    """Screen one chunk and commit its rows, its rejections and the cursor in one transaction."""
    screened = _screen_chunk(conn, chunk, load)
    frame = screened.rows.reset_index(drop=True)
    frame["loaded_at"] = pd.Series(pd.Timestamp(load.now), index=frame.index, dtype="datetime64[ns, UTC]")
    if not frame.empty:
        conn.prepare_table("raw", "shop_orders", frame)
    cursor = load.next_cursor(last)
    if not load.chunks:  # tables, before the first transaction (a listing that fails first creates none)
        prepare_cursors(conn)
        prepare_quarantine(conn, "shop_orders")
    with conn.transaction():
        # Orders stored with this payload: on a first load, only those committed by earlier chunks.
        unchanged = _unchanged(conn, frame if load.stored_before
                               else frame[frame["order_id"].isin(load.loaded_ids)])
        rejected = screened.rejected
        conflicts = set(rejected.loc[rejected["rule"] == DUPLICATE_KEY, "record_id"]) & load.loaded_ids
        if conflicts:  # an earlier chunk loaded a version that a later one contradicts
            conn.delete_keys("raw", "shop_orders", pd.DataFrame({"order_id": sorted(conflicts)}))
        load.written += conn.upsert_frame("raw", "shop_orders", frame[~frame["order_id"].isin(unchanged)],
                                          ["order_id"])
        if len(rejected) or load.open_quarantine:
            merge_quarantine(conn, "shop_orders", rejected, checked_ids=frame["order_id"], raw_layer=True)
            load.open_quarantine = True
        if cursor is not None:
            write_cursor(conn, "shop_orders", cursor)
    load.loaded_ids.update(frame["order_id"])
    load.loaded_ids -= conflicts
    load.cursor = cursor or load.cursor
    load.chunks += 1
    load.unchanged += len(unchanged)
    load.received += len(chunk)
    load.superseded += screened.superseded
    load.rejected.append(screened.rejected)
    load.preview = frame.head(10) if load.preview is None or load.preview.empty else load.preview


def _with_last(items: Iterator) -> Iterator[tuple[object, bool]]:
    """Each item with whether it is the last one (known once the next has come)."""
    pending, first = None, True
    for item in items:
        if not first:
            yield pending, False
        pending, first = item, False
    if not first:
        yield pending, True


@dg.asset(key=["raw", "shop_orders"], group_name="ingestion", pool=WAREHOUSE_POOL,
          kinds={"api", "duckdb"}, tags={"pii": "true"}, freshness_policy=RAW_FRESHNESS)
@releasing
def shop_orders(context: dg.AssetExecutionContext, orders_api: OrdersApi, warehouse: Warehouse) -> dg.MaterializeResult:
    """Orders from the shop's REST API (OAuth 2.0), loaded incrementally on `updated_since`.

    Each order keeps its latest version, stamped with `loaded_at` when its content last changed
    (that arrival day partitions `staging.orders`).

    manual: pulled by the schedule `daily_profiles` (03:00 UTC) or on demand; no parent in the graph
    tells when the shop changed, and each pull pages through its API."""
    now = utc_now()
    with warehouse.connect() as conn:
        stored = _watermark((read_cursor(conn, "shop_orders") or {}).get("updated_since"))
        load = _OrdersLoad(WINDOW.trusted(stored, now), now, _has_rows(conn, "raw", "shop_orders"),
                           _has_rows(conn, "quarantine", "shop_orders", "status = 'open'"))
    read_from = WINDOW.read_from(load.watermark)
    try:  # a chunk at a time (ORDERS_CHUNK orders), each committed with its cursor
        with orders_api.client() as client, warehouse.connect() as conn:
            chunks = client.iter_order_chunks(read_from.isoformat() if read_from else None, ORDERS_CHUNK)
            for chunk, last in _with_last(chunks):
                _write_chunk(conn, chunk, load, last)
            retries, reported_total, pages = client.retries_done, client.reported_total, client.pages
    except SourceError as exc:
        kept = (f"{len(load.loaded_ids)} orders committed{' with their cursor' if load.cursor else ''}, "
                f"in {load.chunks} chunk(s)") if load.chunks else "nothing written"
        raise _fail(exc, kept) from exc
    if reported_total is None:
        context.log.warning("the orders API reported no total (X-Total-Count or `total`): a listing that stopped "
                            f"early cannot be told from a complete one ({load.received} orders received)")
    return dg.MaterializeResult(metadata=frame_metadata(
        load.preview, **{"dagster/row_count": dg.MetadataValue.int(len(load.loaded_ids))},
        rows_loaded=load.written,
        unchanged=load.unchanged, received=load.received, reported_total=reported_total, pages=pages,
        retries=retries, chunks=load.chunks,
        **_screen_metadata(pd.concat(load.rejected, ignore_index=True), load.superseded), read_from=read_from.isoformat() if read_from else None,
        cursor=load.cursor, **_reset(stored, load.watermark)))


def _bus_chunks(event_bus: EventBusResource, after: int, chunk: int) -> Iterator[list[tuple]]:
    """The records on the bus after offset `after`, read in pages and handed on `chunk` at a time as
    (offset, messageId, received_at, payload JSON text): a load holds one chunk, not the backlog.
    A bus that can hand its stored text (`read_encoded`: SQLite) is read without decoding any
    event (decoding and re-encoding 858k payloads cost ~60 % of the step's CPU)."""
    bus = event_bus.open()
    encoded = getattr(bus, "read_encoded", None)

    def page(start: int) -> list[tuple]:
        if encoded is not None:
            return encoded(after_offset=start, limit=min(5000, chunk))
        return [(r.offset, r.message_id, r.received_at, json_text(r.event))
                for r in bus.read(after_offset=start, limit=min(5000, chunk))]

    try:
        records: list = []
        while batch := page(after):
            records.extend(batch)
            after = batch[-1][0]
            if len(records) >= chunk:
                yield records
                records = []
        if records:
            yield records
    finally:
        close = getattr(bus, "close", None)
        if close:
            close()


def epoch_utc(seconds: np.ndarray) -> pd.DatetimeIndex:
    """Epoch seconds (floats) as UTC times to the microsecond, rounded half to even exactly as
    `datetime.fromtimestamp` rounds them (whole seconds and the fraction apart, as CPython does)."""
    fraction, whole = np.modf(np.asarray(seconds, dtype="float64"))
    micros = whole.astype("int64") * 1_000_000 + np.rint(fraction * 1e6).astype("int64")
    return pd.to_datetime(micros, unit="us", utc=True)


def _events_frame(records: list[tuple]) -> pd.DataFrame:
    """Raw rows of bus records (`_bus_chunks`): the first of each messageId within them."""
    # a column at a time: zip(*records) over a chunk of bus records took ~10x as long (~1 s CPU at scale 30)
    offsets, ids, received, payloads = (list(map(operator.itemgetter(i), records)) for i in range(4))
    numeric = bool(received) and isinstance(received[0], (int, float))
    frame = pd.DataFrame({
        "message_id": pd.Series(ids, dtype=object).astype(str), "bus_offset": np.asarray(offsets, dtype="int64"),
        "received_at": epoch_utc(received) if numeric else pd.to_datetime(list(received), utc=True),
        "payload": pd.Series(payloads, dtype=object),
    }, columns=EVENT_COLUMNS)
    return frame.drop_duplicates(subset=["message_id"], keep="first")


def _index_message_ids(conn: WarehouseConnection) -> None:
    """DuckDB: an ART index on raw.events.message_id, so the first-arrival check of a batch looks
    up its messageIds instead of scanning every event ever loaded (built once on an older table)."""
    if conn.dialect == "duckdb":
        conn.execute("create index if not exists raw_events_message_id on raw.events (message_id)")


def _stored_ids(conn: WarehouseConnection, ids: list[str], after: int) -> set[str]:
    """Those of `ids` already in raw.events (an earlier arrival wins). On Snowflake, the rows
    loaded beyond the stored offset (a load cut short before its cursor moved)."""
    if conn.dialect == "duckdb":
        return set(conn.query("select message_id from raw.events where message_id in (select unnest(?::varchar[]))",
                              [ids])["message_id"])
    return set(conn.query("select message_id from raw.events where bus_offset > ?", [after])["message_id"])


@dg.asset(key=["raw", "events"], group_name="ingestion", pool=WAREHOUSE_POOL,
          kinds={"sqlite", "duckdb"}, tags={"pii": "true"}, freshness_policy=RAW_FRESHNESS)
@releasing
def events(event_bus: EventBusResource, warehouse: Warehouse) -> dg.MaterializeResult:
    """Behavioural events (Segment wire format) read from the event bus after the stored offset.

    Each event is stored once: the first arrival of a `messageId` wins.

    manual: loaded by `event_stream_sensor`, one micro-batch run per offset range of the bus (and by
    the schedules); the bus is outside the graph, so no automation condition can see it grow.
    """
    # One connection for the whole step (each open of the DuckDB file costs more as it grows); the
    # step holds the warehouse pool anyway. The backlog is read and written a chunk at a time, each
    # chunk's rows and the cursor at its last offset in one transaction: a load cut short leaves a
    # whole number of chunks and a cursor that resumes after them. An earlier chunk's rows are
    # stored when the next is checked, so the first arrival of a messageId still wins. Memory
    # follows the chunk, not the backlog (one transaction over 858k events held ~1 GB in DuckDB).
    with warehouse.connect() as conn:
        after = int((read_cursor(conn, "events") or {}).get("offset", 0))
        read, loaded, new_offset, shown = 0, 0, after, pd.DataFrame(columns=EVENT_COLUMNS)
        with contextlib.closing(_bus_chunks(event_bus, after, EVENTS_CHUNK)) as chunks:
            records = next(chunks, None)
            if records is not None:  # else nothing to write
                prepare_cursors(conn)
                conn.prepare_table("raw", "events", _events_frame(records[:1]))
            while records is not None:
                read, new_offset = read + len(records), records[-1][0]
                frame = _events_frame(records)
                records = None  # only this chunk's frame stays
                with conn.transaction():
                    frame = frame[~frame["message_id"].isin(_stored_ids(conn, frame["message_id"].tolist(), after))]
                    if not frame.empty:
                        conn.insert_frame("raw", "events", frame)
                        loaded += len(frame)
                        shown = shown if len(shown) else frame.head(10)
                    write_cursor(conn, "events", {"offset": int(new_offset)})
                records = next(chunks, None)
        if loaded:
            _index_message_ids(conn)  # after the first load's rows: one bulk build, not row by row
    return dg.MaterializeResult(metadata=frame_metadata(
        shown, **{"dagster/row_count": dg.MetadataValue.int(loaded)}, rows_loaded=loaded, read_from_bus=read,
        offsets={"from": after, "to": int(new_offset)}))


defs = dg.Definitions(assets=[crm_customers, shop_orders, events])
