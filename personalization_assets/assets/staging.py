"""Staging layer: normalized and validated (`staging/`). Only valid rows pass; the rest go to
`quarantine.<source>` with their rule, message and raw payload. Events and orders are partitioned
by arrival day (`partitions.py`)."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import dagster as dg
import pandas as pd

from .. import staging as logic
from ..bus.micro_batch import OFFSET_FROM_TAG
from ..heap import collecting, releasing
from ..partitions import ARRIVAL_DAYS, backfill_policy
from ..resources.warehouse import Warehouse, WarehouseConnection, identifier
from ..schemas.tables import STAGING_MODELS
from ..side_tables import side_tables
from ..staging import customers_incremental
from .checks import pandera_asset_check, schema_metadata
from .common import (
    EAGER, ON_DEMAND, WAREHOUSE_POOL, frame_metadata, merge_quarantine, prepare_cursors, prepare_quarantine,
    read_cursor, read_window, utc_now, write_cursor,
)
from .raw import EVENT_COLUMNS, ORDER_COLUMNS

PII_TABLES = "activation/pii_tables"  # side tables holding this asset's personal data (raw payloads)
SEEDS_OF_ORDERS = [["seeds", "order_statuses"], ["seeds", "product_categories"], ["seeds", "fx_rates"]]


def _quarantine(conn: WarehouseConnection, source: str, rejected: pd.DataFrame, checked) -> dict:
    """Merge this run's rejections; records re-validated here that now pass are released."""
    merge_quarantine(conn, source, rejected, checked_ids=checked)
    return rejected["rule"].value_counts().to_dict() if len(rejected) else {}


def _prepare(conn: WarehouseConnection, table: str, frame: pd.DataFrame) -> None:
    conn.prepare_table("staging", table, frame)  # DDL before the transaction; typed even when empty
    _add_text_columns(conn, table, frame)


def _add_text_columns(conn: WarehouseConnection, table: str, frame: pd.DataFrame) -> None:
    """Add the text columns a newer staging function produces (e.g. `birth_date_issue`) to a
    table created before them; a new column of another type is a migration to write by hand."""
    have = set(conn.query(f"select * from staging.{identifier(table)} limit 0").columns.str.lower())
    for column, dtype in frame.dtypes.items():
        if str(column).lower() in have:
            continue
        if dtype != object:
            raise RuntimeError(f"staging.{table} lacks column {column} ({dtype}): add it to the table, then re-run")
        conn.execute(f"alter table staging.{identifier(table)} add column {identifier(str(column))} varchar")


# -- re-staging: what the staging assets and the quarantine replay both run ----------------------
def restage_customers(conn: WarehouseConnection, *, full: bool = False, replay_open: bool = False,
                      chunk_rows: int = customers_incremental.CHUNK_ROWS):
    """Stage the CRM customers that changed since they were last staged (`full`: all of them;
    `replay_open`: and the open quarantined ones) into
    `staging.customers`, a chunk at a time (`staging/customers_incremental.py`). Returns the run
    and the rejections by rule."""
    prepare_quarantine(conn, "crm_customers")
    run = customers_incremental.stage_changed_customers(
        conn, now=utc_now(), full=full, replay_open=replay_open, chunk_rows=chunk_rows,
        write_quarantine=lambda rejected, checked: merge_quarantine(conn, "crm_customers", rejected, checked),
        prepare_staging=lambda frame: _prepare(conn, "customers", frame))
    rejected = run.rejections
    return run, rejected["rule"].value_counts().to_dict() if len(rejected) else {}


def _stage_order_rows(conn: WarehouseConnection, raw):
    """Stage raw order rows against the staged customers they name; the tables they go to are ready."""
    result = logic.stage_orders(raw, known_customers=_known_customers(conn, raw), now=utc_now())
    prepare_quarantine(conn, "shop_orders")
    _prepare(conn, "orders", result.orders)
    _prepare(conn, "order_lines", result.lines)
    return result


def _known_customers(conn: WarehouseConnection, raw: pd.DataFrame) -> pd.Series:
    """The source ids of the staged customers among those `raw`'s orders name: looked up per chunk
    in the warehouse, not every customer's id read (and made a set of) for each chunk, which at
    1M customers and 20k-order chunks cost 75 sets of a million strings."""
    named = raw["customer_id"].dropna().astype(str) if "customer_id" in raw else pd.Series([], dtype=object)
    if not conn.table_exists("staging", "customers"):
        return pd.Series([], dtype=object)
    return pd.Series(sorted(conn.present("staging.customers", "source_id", named[named != ""])), dtype=object)


ORDERS_CHUNK_ROWS = 20_000  # raw orders staged at a time by a window's restage (their parsed lines are the bulk)


OrderRange = tuple[str | None, str | None]  # order_id in (low, high]; None: unbounded


def _order_ranges(conn: WarehouseConnection, start: datetime, end: datetime, rows: int) -> list[OrderRange]:
    """order_id ranges of `rows` raw orders each (the last: the rest) covering [start, end), from
    one query of the window's order ids. Each chunk then reads only its own orders; paging with
    `order_id > last ... limit rows` sorted the window's rows, payloads and all, once per chunk:
    97 s of reading for 1.5M orders in 76 chunks (4.5 s now), and growing with the square of the
    window."""
    if not conn.table_exists("raw", "shop_orders"):
        return [(None, None)]
    bounds = [str(b) for (b,) in conn.rows(
        "select order_id from (select order_id, row_number() over (order by order_id) as n from raw.shop_orders "
        f"where loaded_at >= ? and loaded_at < ?) where n % {int(rows)} = 0 order by order_id", [start, end])]
    edges = [None, *bounds, None]
    return list(zip(edges, edges[1:]))


def _raw_orders(conn: WarehouseConnection, start: datetime, end: datetime, within: OrderRange) -> pd.DataFrame:
    """The raw orders of [start, end) whose order_id lies in `within`, by order_id."""
    if not conn.table_exists("raw", "shop_orders"):
        return pd.DataFrame(columns=ORDER_COLUMNS)
    sql, params = "select * from raw.shop_orders where loaded_at >= ? and loaded_at < ?", [start, end]
    low, high = within
    if low is not None:
        sql, params = sql + " and order_id > ?", params + [low]
    if high is not None:
        sql, params = sql + " and order_id <= ?", params + [high]
    return conn.query(sql + " order by order_id", params)


@dataclass
class RestagedOrders:
    """What a window's restage wrote: counts and the first rows (preview, column schema), never
    the window's rows themselves."""

    rows_in: int = 0  # raw orders read
    orders: int = 0  # rows written to staging.orders
    lines: int = 0  # rows written to staging.order_lines
    sample_orders: pd.DataFrame | None = None
    sample_lines: pd.DataFrame | None = None
    quarantined: pd.DataFrame | None = None
    unmapped: dict[str, dict[str, int]] = field(default_factory=dict)
    by_rule: dict[str, int] = field(default_factory=dict)

    def add(self, raw: pd.DataFrame, part: logic.StagedOrders, sample_rows: int = 10) -> None:
        self.rows_in += len(raw)
        self.orders += len(part.orders)
        self.lines += len(part.lines)
        self.sample_orders = _head(self.sample_orders, part.orders, sample_rows)
        self.sample_lines = _head(self.sample_lines, part.lines, sample_rows)
        self.quarantined = _head(self.quarantined, part.quarantined, None)  # rejections: few
        for lookup, counts in (part.unmapped or {}).items():
            merged = self.unmapped.setdefault(lookup, {})
            for value, n in counts.items():
                merged[value] = merged.get(value, 0) + n


def _head(kept: pd.DataFrame | None, more: pd.DataFrame, rows: int | None) -> pd.DataFrame:
    if kept is None or (not len(kept) and len(more)):
        return more.head(rows) if rows else more
    if (rows and len(kept) >= rows) or not len(more):
        return kept
    return pd.concat([kept, more.head(rows - len(kept)) if rows else more], ignore_index=True)


RESTAGED = "__restaged"  # suffix of the side tables a restage under way writes (`side_tables.py`)
ORDER_TABLES = ("orders", "order_lines")


def restage_orders(conn: WarehouseConnection, start: datetime, end: datetime,
                   chunk_rows: int = ORDERS_CHUNK_ROWS) -> RestagedOrders:
    """Stage the orders that arrived in [start, end) again, replacing that window of staging.

    The raw orders are read and staged `chunk_rows` at a time, by order_id ranges (raw keeps one
    row per order, and every order rule looks at one order and its own lines), and each chunk is
    committed to a side table (`staging.orders__restaged`, `staging.order_lines__restaged`). One
    transaction then replaces the window with them and moves the quarantine, as `restage_events`
    does: readers see the old window or the new one, and the process holds one chunk's orders and
    lines, never the window's (1.5M orders held 2.2 GB)."""
    waiting = _open_ids(conn, "shop_orders")  # only open quarantine rows can be released
    run, checked = RestagedOrders(), []
    with side_tables(conn, "staging", ORDER_TABLES, RESTAGED) as sides:
        # each chunk's cycles go before the next is read
        for within in collecting(_order_ranges(conn, start, end, chunk_rows)):
            raw = _raw_orders(conn, start, end, within)
            if len(raw) or run.sample_orders is None:
                part = _stage_order_rows(conn, raw)
                if run.sample_orders is None:  # the first chunk made the tables: their side tables
                    sides.create_like_targets()
                sides.append({"orders": part.orders, "order_lines": part.lines})
                run.add(raw, part)
                ids = raw["order_id"].astype(str)
                checked.append(ids[ids.isin(waiting)])
            raw = part = None  # free the chunk before reading the next
        run.unmapped = {k: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))) for k, v in run.unmapped.items()}
        with sides.swap():  # what the side tables replace; their rows go in at its end
            run.by_rule = _quarantine(conn, "shop_orders", run.quarantined, pd.concat(checked, ignore_index=True))
            for table in ORDER_TABLES:
                conn.execute(f"delete from staging.{table} where loaded_at >= ? and loaded_at < ?", [start, end])
                # an order lives only in the partition of its latest arrival
                conn.execute(f"delete from staging.{table} where order_id in "
                             f"(select order_id from {sides.side(table)})")
    return run


EVENTS_CHUNK_ROWS = 50_000  # raw events staged at a time by a whole-day restage (its memory follows this)


def _offset_ranges(conn: WarehouseConnection, start: datetime, end: datetime, rows: int) -> list[tuple[int, int]]:
    """Bus-offset ranges of at most `rows` offsets covering the raw events received in [start, end).
    Offsets grow with arrival time, so a day's events lie in one run of offsets, and a range reads
    only its own blocks of raw.events."""
    if not conn.table_exists("raw", "events"):
        return []
    low, high = conn.query("select min(bus_offset) as low, max(bus_offset) as high from raw.events "
                           "where received_at >= ? and received_at < ?", [start, end]).iloc[0]
    if pd.isna(low):
        return []
    return [(first, min(first + rows - 1, int(high))) for first in range(int(low), int(high) + 1, rows)]


def restage_events(conn: WarehouseConnection, start: datetime, end: datetime,
                   chunk_rows: int = EVENTS_CHUNK_ROWS) -> logic.StagedEvents:
    """Stage the events received in [start, end) again, replacing that window of staging, a chunk
    of bus offsets at a time: a day of 858k events never sits in memory whole (every event rule
    looks at one event alone, and raw keeps one row per messageId).

    Each chunk is committed to a side table (`staging.events__restaged`), and one transaction then
    replaces the window with it, moves the quarantine and the watermark: readers see the old day
    or the new one, never a part, while the warehouse holds one chunk's uncommitted rows at a time
    (one transaction over every chunk's inserts held ~90 MB per 50k events until its commit)."""
    now = utc_now()
    ranges = _offset_ranges(conn, start, end, chunk_rows)

    def chunk(bounds: tuple[int, int] | None) -> tuple[pd.DataFrame, logic.Staged]:
        raw = pd.DataFrame(columns=EVENT_COLUMNS) if bounds is None else conn.query(
            "select * from raw.events where received_at >= ? and received_at < ? and bus_offset between ? and ?",
            [start, end, *bounds])
        return raw, logic.stage_events(raw, now=now)

    raw, result = chunk(ranges[0] if ranges else None)
    prepare_cursors(conn)
    prepare_quarantine(conn, "events")
    _prepare(conn, "events", result.valid)
    staged, checked = logic.StagedEvents(), []
    # Re-validating releases only open quarantine rows: of the window's messageIds, only those
    # with one are kept for the merge (not the day's 858k ids). The warehouse pool has one writer.
    waiting = _open_ids(conn, "events")
    with side_tables(conn, "staging", ["events"], RESTAGED) as sides:
        sides.create_like_targets()
        for i in collecting(range(max(len(ranges), 1))):  # each chunk's cycles go before the next
            if i:
                raw, result = chunk(ranges[i])
            sides.append({"events": result.valid})
            staged.add(raw, result)
            ids = raw["message_id"].astype(str)
            checked.append(ids[ids.isin(waiting)])
            raw = result = None  # free the chunk before reading the next
        with sides.swap():  # the day; the side table's rows go in at its end
            conn.execute("delete from staging.events where received_at >= ? and received_at < ?", [start, end])
            _quarantine(conn, "events", staged.quarantined, pd.concat(checked, ignore_index=True))
            if staged.offsets:  # the next micro-batch starts after these, not at the day's start
                _advance_staged_offset(conn, staged.offsets[1])
    return staged


def _raw_rows(conn: WarehouseConnection, table: str, id_column: str, ids: list[str], columns: list[str]) -> pd.DataFrame:
    """The raw rows of these record ids, looked up by id (`query_in`), not read by day."""
    if not ids or not conn.table_exists("raw", table):
        return pd.DataFrame(columns=columns)
    return conn.query_in(f"select * from raw.{table} where {id_column} in ({{values}})", ids)


def replay_events(conn: WarehouseConnection, record_ids: list[str]):
    """Stage again only the raw events of these (open, quarantined) messageIds, each from its first
    arrival, and add those that pass to staging: the replay's cost follows the open records, not
    the days they arrived on (every event rule looks at one event alone)."""
    raw = _raw_rows(conn, "events", "message_id", record_ids, EVENT_COLUMNS).sort_values("bus_offset", kind="stable")
    result = logic.stage_events(raw, now=utc_now())
    prepare_quarantine(conn, "events")
    _prepare(conn, "events", result.valid)
    with conn.transaction():
        by_rule = _quarantine(conn, "events", result.quarantined, raw["message_id"].astype(str))
        if len(result.valid):
            conn.delete_keys("staging", "events", result.valid[["message_id"]])
            conn.insert_frame("staging", "events", result.valid)
    return raw, result, by_rule


def replay_orders(conn: WarehouseConnection, record_ids: list[str]):
    """Stage again only these (open, quarantined) orders, from their one raw row each (raw keeps
    the latest version), and move those that pass, with their lines, into staging."""
    raw = _raw_rows(conn, "shop_orders", "order_id", record_ids, ORDER_COLUMNS)
    result = _stage_order_rows(conn, raw)
    with conn.transaction():
        by_rule = _quarantine(conn, "shop_orders", result.quarantined, raw["order_id"].astype(str))
        if len(result.orders):
            for table, frame in (("orders", result.orders), ("order_lines", result.lines)):
                conn.delete_keys("staging", table, result.orders[["order_id"]])
                conn.insert_frame("staging", table, frame)
    return raw, result, by_rule


STAGED_EVENTS_CURSOR = "staging_events"  # highest raw.events bus_offset staged (micro-batch or whole day)


def _advance_staged_offset(conn: WarehouseConnection, newest: int) -> None:
    """Move the micro-batch watermark up to the newest bus offset just staged (inside the write
    transaction). Bus offsets grow with arrival time, so every raw event of an arrival day at or
    below it has been staged, by a micro-batch or a whole-day restage."""
    after = int((read_cursor(conn, STAGED_EVENTS_CURSOR) or {}).get("offset", 0))
    if newest > after:
        write_cursor(conn, STAGED_EVENTS_CURSOR, {"offset": newest})


def stage_new_events(conn: WarehouseConnection, start: datetime, end: datetime) -> logic.StagedEvents:
    """Stage only the raw events of [start, end) above the stored bus-offset watermark and add them
    to staging (replacing rows with the same messageId, so a repeated batch changes nothing).

    A micro-batch's cost grows with the batch, not with the day. Raw rows outside the window stay
    for the day's full restage (`restage_events`), which the schedules run.
    """
    after = int((read_cursor(conn, STAGED_EVENTS_CURSOR) or {}).get("offset", 0))
    raw = read_window(conn, "raw", "events", "received_at", start, end, EVENT_COLUMNS, after=("bus_offset", after))
    result = logic.stage_events(raw, now=utc_now())
    prepare_cursors(conn)
    prepare_quarantine(conn, "events")
    _prepare(conn, "events", result.valid)
    with conn.transaction():
        # Only the batch's own open quarantine rows can be released: the day's are not read again.
        reopened = _open_among(conn, "events", raw["message_id"].astype(str).tolist())
        _quarantine(conn, "events", result.quarantined, reopened)
        if len(result.valid) and conn.table_exists("staging", "events"):
            _delete_in_window(conn, result.valid["message_id"].astype(str).tolist(), start, end)
            conn.insert_frame("staging", "events", result.valid)
        if len(raw):
            _advance_staged_offset(conn, int(raw["bus_offset"].max()))
    staged = logic.StagedEvents()
    staged.add(raw, result)
    return staged


def _open_among(conn: WarehouseConnection, source: str, ids: list[str]) -> list[str]:
    """Those of `ids` with an open row in `quarantine.<source>`."""
    if not ids or not conn.table_exists("quarantine", source):
        return []
    return conn.query_in(f"select distinct record_id from quarantine.{identifier(source)} where status = 'open' "
                         "and record_id in ({values})", ids)["record_id"].tolist()


def _delete_in_window(conn: WarehouseConnection, ids: list[str], start: datetime, end: datetime) -> None:
    """Delete these messageIds from staging.events within [start, end) only: a messageId lives in
    the day it arrived (raw keeps its first arrival), and the window lets the warehouse skip the
    other days' blocks instead of scanning the table."""
    for part in (ids[i:i + 1_000] for i in range(0, len(ids), 1_000)):
        conn.execute("delete from staging.events where received_at >= ? and received_at < ? "
                     f"and message_id in ({', '.join('?' for _ in part)})", [start, end, *part])


@dg.asset(key=["staging", "customers"], deps=[["raw", "crm_customers"], ["seeds", "country_synonyms"]],
          group_name="staging", pool=WAREHOUSE_POOL, kinds={"pandas", "duckdb"}, tags={"pii": "true"},
          metadata={PII_TABLES: ["quarantine.crm_customers"]}, automation_condition=EAGER)
@releasing
def customers(warehouse: Warehouse) -> dg.MaterializeResult:
    """CRM customers in canonical form: display names, email (+ matching key, disposable and role
    flags), E.164 phone, ISO country, IANA time zone, UTC times; each raw original alongside.

    Only the CRM rows that changed since they were last staged are staged again, in chunks, so a
    run's memory follows the chunk and its time the changes, not the table."""
    with warehouse.connect() as conn:
        run, by_rule = restage_customers(conn)
        summary = _customers_summary(conn)
    return dg.MaterializeResult(metadata=frame_metadata(
        summary.pop("sample"), rows_in=run.rows_in, raw_rows=run.raw_total, chunks=run.chunks,
        deleted_without_raw_row=run.deleted, quarantined=len(run.rejections), quarantined_by_rule=by_rule,
        **summary))


def _customers_summary(conn: WarehouseConnection) -> dict:
    """Counts over the whole of `staging.customers`, computed in the warehouse (never loaded)."""
    def counts(sql: str) -> dict:
        frame = conn.query(sql + " group by 1 order by 2 desc, 1 limit 10")
        return {str(k): int(v) for k, v in zip(frame.iloc[:, 0], frame.iloc[:, 1])}

    table = "staging.customers"
    sample = conn.query(f"select * from {table} order by record_id limit 5")
    return {
        "sample": sample, "dagster/row_count": dg.MetadataValue.int(int(conn.scalar(f"select count(*) from {table}"))),
        "phone_issues": counts(f"select phone_issue, count(*) from {table} where phone_issue is not null"),
        "unknown_countries": counts(f"select cast(country_raw as varchar), count(*) from {table} "
                                    "where country is null and country_raw is not null"),
        "disposable_emails": int(conn.scalar(f"select count(*) from {table} where email_disposable")),
        "role_emails": int(conn.scalar(f"select count(*) from {table} where email_role")),
        "birth_date_issues": counts(f"select split_part(birth_date_issue, ':', 1), count(*) from {table} "
                                    "where birth_date_issue is not null"),
        **schema_metadata("customers", sample)}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(["staging", "orders"], deps=[["raw", "shop_orders"], ["staging", "customers"], *SEEDS_OF_ORDERS],
                     group_name="staging", tags={"pii": "true"}, kinds={"pandas", "duckdb"},
                     metadata={"partition_expr": "loaded_at", PII_TABLES: ["quarantine.shop_orders"]},
                     automation_condition=EAGER),
        dg.AssetSpec(["staging", "order_lines"], deps=[["raw", "shop_orders"], *SEEDS_OF_ORDERS],
                     group_name="staging", kinds={"pandas", "duckdb"}, metadata={"partition_expr": "loaded_at"},
                     automation_condition=EAGER),
    ],
    pool=WAREHOUSE_POOL,
    partitions_def=ARRIVAL_DAYS,
    backfill_policy=backfill_policy(),
)
@releasing
def orders(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Shop orders and their lines in canonical form (exact minor units, EUR reporting amounts at the
    day's FX rate, looked-up statuses and categories, UTC times), partitioned by the day their latest
    version arrived; an order lives only in that day's partition."""
    window = context.partition_time_window
    with warehouse.connect() as conn:
        run = restage_orders(conn, window.start, window.end)
    days = {"partitions": len(context.partition_keys)}
    yield dg.MaterializeResult(asset_key=["staging", "orders"], metadata=frame_metadata(
        run.sample_orders, **{"dagster/row_count": dg.MetadataValue.int(run.orders)}, rows_in=run.rows_in,
        quarantined=len(run.quarantined), quarantined_by_rule=run.by_rule, **days,
        **schema_metadata("orders", run.sample_orders)))
    yield dg.MaterializeResult(asset_key=["staging", "order_lines"], metadata=frame_metadata(
        run.sample_lines, **{"dagster/row_count": dg.MetadataValue.int(run.lines)}, unmapped=run.unmapped, **days,
        **schema_metadata("order_lines", run.sample_lines)))


@dg.asset(key=["staging", "events"], deps=[["raw", "events"], ["seeds", "event_names"]], group_name="staging",
          pool=WAREHOUSE_POOL, kinds={"pandas", "duckdb"}, tags={"pii": "true"},
          partitions_def=ARRIVAL_DAYS, backfill_policy=backfill_policy(),
          metadata={"partition_expr": "received_at", PII_TABLES: ["quarantine.events"]}, automation_condition=EAGER)
@releasing
def events(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Tracking events validated against the tracking plan, one row per messageId, event names
    mapped to tracking-plan codes, partitioned by the day the collector received them.

    A micro-batch run (launched by `event_stream_sensor`) stages only the events that arrived after
    the last ones staged, by a micro-batch or a whole-day run; any other run re-stages its days
    whole."""
    window = context.partition_time_window
    incremental = OFFSET_FROM_TAG in context.run.tags
    with warehouse.connect() as conn:
        stage = stage_new_events if incremental else restage_events
        staged = stage(conn, window.start, window.end)
    quarantined = staged.quarantined
    return dg.MaterializeResult(metadata=frame_metadata(
        staged.sample, **{"dagster/row_count": dg.MetadataValue.int(staged.valid_rows)},
        mode="new events only (micro-batch)" if incremental else "whole days re-staged",
        staged_bus_offsets=list(staged.offsets) if incremental and staged.offsets else None, rows_in=staged.rows_in,
        quarantined=len(quarantined), quarantined_by_rule=quarantined["rule"].value_counts().to_dict()
        if len(quarantined) else {}, unmapped=staged.unmapped, partitions=len(context.partition_keys),
        **schema_metadata("events", staged.sample)))


def unmapped_values_check(asset_key: list[str], raw_column: str, code_column: str, lookup: str,
                          written: Callable[[dg.AssetCheckExecutionContext], tuple[str, list]] | None = None):
    """WARN when a staged table holds values its lookup seed does not map (listed with counts).
    With `written` (the condition selecting the rows the run wrote), only those rows are looked at."""
    table = ".".join(asset_key)

    @dg.asset_check(asset=asset_key, name=f"{code_column}_mapped", blocking=False, pool=WAREHOUSE_POOL,
                    description=f"Every {raw_column} maps through the `{lookup}` seed; unmapped values are listed.")
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        where, params = written(context) if written else ("1 = 1", [])
        with warehouse.connect() as conn:
            if not conn.table_exists(*asset_key):
                return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
            found = conn.query(f"select cast({raw_column} as varchar) as value, count(*) as n from {table} "
                               f"where {code_column} is null and {raw_column} is not null and {where} "
                               "group by 1 order by 2 desc, 1 limit 50", params)
        unmapped = {str(v): int(n) for v, n in zip(found["value"], found["n"])}
        return dg.AssetCheckResult(passed=not unmapped, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"unmapped_values": dg.MetadataValue.json(unmapped),
                                             "unmapped_rows": sum(unmapped.values()), "lookup": lookup})

    return _check


REPLAY = {"shop_orders": replay_orders, "events": replay_events}  # quarantine source -> replay of its ids


def _open_ids(conn: WarehouseConnection, source: str) -> set[str]:
    if not conn.table_exists("quarantine", source):
        return set()
    return set(conn.query(f"select distinct record_id from quarantine.{source} where status = 'open'")["record_id"])


# The replay reads the raw tables and the quarantine and re-stages from them, so it depends on raw,
# not on the staging assets: a failed blocking check on staging must not hold back its own remedy.
@dg.asset(key=["quarantine", "staging_replayed"], group_name="staging", pool=WAREHOUSE_POOL, kinds={"duckdb"},
          tags=ON_DEMAND, deps=[["raw", "crm_customers"], ["raw", "shop_orders"], ["raw", "events"],
                                ["seeds", "country_synonyms"], *SEEDS_OF_ORDERS, ["seeds", "event_names"]])
def staging_replay(warehouse: Warehouse) -> dg.MaterializeResult:
    """Re-validates every open quarantined CRM customer, order and staged event with today's rules,
    schemas and lookups (run it after a fix). Records that pass now move into staging (only the
    open records, never the whole customers table or the days of orders and events) and their
    quarantine rows are released; replaying again moves nothing twice. It runs even when a blocking
    check on staging failed.

    manual: run it after a fix to a rule, schema or lookup; on its own it would only re-check
    what still fails, so the default jobs leave it out."""
    moved, checked = {}, {}
    with warehouse.connect() as conn:
        crm = _open_ids(conn, "crm_customers")
        if crm:
            restage_customers(conn, replay_open=True)  # the open ones (and any changed): never the table
        moved["crm_customers"], checked["crm_customers"] = len(crm - _open_ids(conn, "crm_customers")), len(crm)
        for source, replay in REPLAY.items():  # only the open records, never the days they arrived on
            waiting = _open_ids(conn, source)
            if waiting:
                replay(conn, sorted(waiting))
            checked[source], moved[source] = len(waiting), len(waiting - _open_ids(conn, source))
    frame = pd.DataFrame({"source": list(checked), "checked": list(checked.values()),
                          "moved": [moved[s] for s in checked]})
    return dg.MaterializeResult(metadata=frame_metadata(frame, moved=moved, checked=checked))


def days_written(column: str) -> Callable[[dg.AssetCheckExecutionContext], tuple[str, list]]:
    """The condition selecting the rows of the arrival days the run wrote (on `column`); a
    check-only run without a partition selects the whole table."""
    def where(context: dg.AssetCheckExecutionContext) -> tuple[str, list]:
        if context.has_partition_key or context.has_partition_key_range:
            window = context.partition_time_window
            return f"{identifier(column)} >= ? and {identifier(column)} < ?", [window.start, window.end]
        return "1 = 1", []

    return where


def events_written_filter(context: dg.AssetCheckExecutionContext) -> tuple[str, list]:
    """The condition on staging.events that selects the rows the run wrote: its days, and in a
    micro-batch only the events of the bus offsets it staged (from its materialization), so a
    check's cost follows the batch."""
    where, params = days_written("received_at")(context)
    if OFFSET_FROM_TAG in context.run.tags:
        latest = context.instance.get_latest_materialization_event(dg.AssetKey(["staging", "events"]))
        entry = latest.asset_materialization.metadata.get("staged_bus_offsets") if latest else None
        if latest is not None and latest.run_id == context.run.run_id and entry is not None:
            offsets = entry.value  # None: the batch staged nothing
            where += " and message_id in (select message_id from raw.events where bus_offset between ? and ?)"
            params += offsets if offsets else [0, -1]
    return where, params


ROWS_WRITTEN = {"events": events_written_filter, "orders": days_written("loaded_at"),
                "order_lines": days_written("loaded_at")}

STAGING_CHECKS = [
    # Each reads its table from the warehouse a chunk at a time (memory follows the chunk, not the
    # table); the partitioned ones only the days (or micro-batch) the run wrote.
    *(pandera_asset_check(["staging", name], model, blocking=True, pool=WAREHOUSE_POOL, in_warehouse=True,
                          rows_written=ROWS_WRITTEN.get(name))
      for name, model in STAGING_MODELS.items()),
    unmapped_values_check(["staging", "events"], "event_raw", "event_code", "event_names", events_written_filter),
    unmapped_values_check(["staging", "order_lines"], "category_raw", "category", "product_categories"),
]

defs = dg.Definitions(assets=[customers, orders, events, staging_replay], asset_checks=STAGING_CHECKS)
