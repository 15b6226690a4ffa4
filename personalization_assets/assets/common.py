"""Small helpers every asset module shares: the DuckDB pool, metadata, cursors, quarantine writes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import dagster as dg
import pandas as pd

from .. import clock
from ..partitions import STREAM_PARTITIONED
from ..privacy import mask_frame
from ..quality import quarantine
from ..resources.warehouse import WarehouseConnection

# DuckDB allows one writing process per file: every asset that writes the warehouse queues here.
WAREHOUSE_POOL = "warehouse_writer"
# Assets whose cost follows the whole history, not the new data: run on demand, never by the
# default jobs (`everything` leaves them out; select them by name).
ON_DEMAND_TAG = "on_demand"
ON_DEMAND = {ON_DEMAND_TAG: "true"}

# Automation: follow the parents, but never past a parent's failed blocking check.
# Dagster's eager() waits while any partition of a parent is missing or in progress. The arrival-day
# parents have empty days back to FIRST_DAY that nothing will ever fill, and a micro-batch is in
# progress most of the time under traffic; so for them only the newest day must exist, and a running
# micro-batch does not hold the children back (the next tick picks up what it adds).
_PARENTS_MISSING = (
    dg.AutomationCondition.any_deps_missing().ignore(STREAM_PARTITIONED)
    | dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.in_latest_time_window() & dg.AutomationCondition.missing()
        & ~dg.AutomationCondition.will_be_requested()).allow(STREAM_PARTITIONED)
).with_label("any_deps_missing (arrival days: the newest only)")
_PARENTS_RUNNING = dg.AutomationCondition.any_deps_in_progress().ignore(STREAM_PARTITIONED).with_label(
    "any_deps_in_progress (not the micro-batches)")
EAGER = (dg.AutomationCondition.eager()
         .replace("any_deps_missing", _PARENTS_MISSING).replace("any_deps_in_progress", _PARENTS_RUNNING)
         & dg.AutomationCondition.all_deps_blocking_checks_passed()).with_label("eager, after blocking checks")


def on_cron_after_checks(cron: str) -> dg.AutomationCondition:
    """Refresh on a cron tick once the parents have updated, never past a failed blocking check."""
    return (dg.AutomationCondition.on_cron(cron)
            & dg.AutomationCondition.all_deps_blocking_checks_passed()).with_label(f"{cron}, after blocking checks")


def eager_or_cron(cron: str) -> dg.AutomationCondition:
    """Follow the parents (a new micro-batch reaches it within a tick), and refresh on the cron tick
    as well: what it computes ages with the clock (recency, time windows) even without new data."""
    return (EAGER | on_cron_after_checks(cron)).with_label(f"eager, and {cron}, after blocking checks")


# Seeds: reload one whose CSV changed (its code version is the CSV's hash) or that goes missing.
ON_SEED_CHANGE = (dg.AutomationCondition.on_missing()
                  | dg.AutomationCondition.code_version_changed()).with_label("when its CSV changed, or it goes missing")

# The trigger mirror copies a ledger that grows without any Dagster parent updating: a plain clock.
EVERY_5_MINUTES = (dg.AutomationCondition.cron_tick_passed("*/5 * * * *").since_last_handled()
                   ).with_label("every 5 minutes")

def utc_now() -> datetime:
    """The wall clock, or the instant a demo run pinned (`clock.py`)."""
    return clock.utc_now()


def _pii_asset() -> bool:
    """Whether the running step materializes an asset tagged `pii` (outside a run: assume so)."""
    try:
        context = dg.OpExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return True
    return not context.has_assets_def or any(s.tags.get("pii") == "true" for s in context.assets_def.specs)


def preview(frame: pd.DataFrame, rows: int = 10, pii: bool | None = None) -> dg.MetadataValue:
    """The first rows as markdown; personal values masked for assets tagged `pii` (Dagster keeps
    metadata for good, and an erasure cannot edit it)."""
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    shown = frame.head(rows).copy()
    if _pii_asset() if pii is None else pii:
        shown = mask_frame(shown)
    for column in shown.columns:  # long JSON payloads make the preview unreadable
        if shown[column].dtype == object:
            shown[column] = shown[column].map(lambda v: v if not isinstance(v, str) or len(v) < 60 else v[:57] + "...")
    return dg.MetadataValue.md(shown.to_markdown(index=False))


# Dagster builds a record class's constructor on its first use, and keeps the local variables of
# the function that made it for good (dagster_shared/check/builder.py `update_from_frame`): made
# first inside `frame_metadata`, it kept that step's frame (~350 MB at 1M golden records) alive
# for the rest of the run. Made here, it keeps this module's import frame.
dg.TableSchema(columns=[dg.TableColumn("_", "int64")])


def frame_metadata(frame: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """Row count, preview and (unless given) a column schema inferred from the frame."""
    metadata: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "preview": preview(frame),
    }
    if "dagster/column_schema" not in extra:
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[dg.TableColumn(str(c), str(t)) for c, t in frame.dtypes.items()]
        )
    for key, value in extra.items():
        metadata[key] = dg.MetadataValue.json(value) if isinstance(value, (dict, list)) else value
    return metadata


# -- cursors: stored in the warehouse, moved in the same transaction as the rows they describe --
def read_cursor(conn: WarehouseConnection, name: str) -> dict | None:
    if not conn.table_exists("ops", "cursors"):
        return None
    value = conn.scalar("select cursor_json from ops.cursors where name = ?", [name])
    return json.loads(value) if value else None


def _typed_empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


CURSOR_TABLE = _typed_empty({"name": "object", "cursor_json": "object", "updated_at": "datetime64[ns, UTC]"})

def prepare_cursors(conn: WarehouseConnection) -> None:
    """Create `ops.cursors` if missing (before a transaction: see `prepare_table`)."""
    conn.prepare_table("ops", "cursors", CURSOR_TABLE)


def prepare_quarantine(conn: WarehouseConnection, source: str) -> None:
    """Create `quarantine.<source>` if missing; a table from before `released_at` gains it."""
    quarantine.prepare_table(conn, source)


def write_cursor(conn: WarehouseConnection, name: str, cursor: dict) -> None:
    conn.execute("delete from ops.cursors where name = ?", [name])
    conn.execute("insert into ops.cursors values (?, ?, ?)", [name, json.dumps(cursor), utc_now()])


def read_table(conn: WarehouseConnection, schema: str, table: str, columns: list[str]) -> pd.DataFrame:
    """A whole table, or an empty frame with the expected columns before its first load."""
    if not conn.table_exists(schema, table):
        return pd.DataFrame(columns=columns)
    return conn.query(f"select * from {schema}.{table}")


def read_window(conn: WarehouseConnection, schema: str, table: str, column: str,
                start: datetime, end: datetime, columns: list[str],
                after: tuple[str, int] | None = None) -> pd.DataFrame:
    """Rows of a table whose `column` lies in [start, end): one partition's (or range's) input.
    `after=(offset_column, value)` keeps only the rows above that offset."""
    if not conn.table_exists(schema, table):
        return pd.DataFrame(columns=columns)
    sql, params = f"select * from {schema}.{table} where {column} >= ? and {column} < ?", [start, end]
    if after is not None:
        sql, params = sql + f" and {after[0]} > ?", params + [after[1]]
    return conn.query(sql, params)


def write_window(conn: WarehouseConnection, schema: str, table: str, frame: pd.DataFrame, column: str,
                 start: datetime, end: datetime, key: str | None = None) -> None:
    """Make [start, end) of a partitioned table hold exactly `frame` (call inside `transaction()`).

    With `key`, rows with the same key elsewhere are removed too: a record lives in the partition
    of its latest arrival, never in two. Call `conn.prepare_table` first (DDL outside transactions).
    """
    if not conn.table_exists(schema, table):
        return
    conn.execute(f"delete from {schema}.{table} where {column} >= ? and {column} < ?", [start, end])
    if key is not None:
        conn.delete_keys(schema, table, frame[[key]])
    conn.insert_frame(schema, table, frame)


def merge_quarantine(conn: WarehouseConnection, source: str, rows: pd.DataFrame,
                     checked_ids: Iterable[str] = (), raw_layer: bool = False) -> int:
    """Add rejected rows to `quarantine.<source>` (see `quality.quarantine.merge`): a row seen again
    bumps attempts; an open row whose record was re-validated (`checked_ids`) and passed is released
    (`raw_layer`: the raw layer's own `raw.*` rows, else the others)."""
    checked = list(checked_ids)
    if rows.empty and not checked:
        return 0
    existing = read_table(conn, "quarantine", source, quarantine.COLUMNS)
    merged = quarantine.merge(existing, rows.assign(source=source), checked_ids=checked, now=utc_now(),
                              raw_layer=raw_layer)
    conn.replace_frame("quarantine", source, merged)
    return len(rows.drop_duplicates(subset=["record_id", "rule"])) if len(rows) else 0
