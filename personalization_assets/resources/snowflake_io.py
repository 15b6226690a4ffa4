"""The prod IO manager: Dagster's Snowflake pandas IO manager, with commit groups written all or nothing.

`SnowflakePandasIOManager` replaces a table as a committed DELETE, then a `write_pandas` load (a
PUT and a COPY, which Snowflake commits on its own): a crash in between leaves the table empty, and
the three identity tables (`warehouse/commit_group`, see `io_manager.py`) land one at a time. Here
the outputs of a commit group are held until the group is complete; each frame is then loaded into
its own stage table (DDL and loads commit implicitly in Snowflake, so they all happen first), and
ONE transaction replaces every target from its stage and records the commits in `ops.table_commits`.
A failure before that transaction's COMMIT leaves every target as it was. `ALTER TABLE ... SWAP
WITH` is DDL and commits per table, so it cannot make three tables change together.

A process killed inside that transaction leaves it open on the server: readers keep seeing the last
commit, and Snowflake rolls it back when the session expires (until then its locks stall the next
writer; `SYSTEM$ABORT_TRANSACTION` ends it sooner). Stage tables a killed run left are dropped by the
next commit of the group.

Outputs outside a commit group keep Dagster's behaviour. Reads of a group's tables are refused when
torn or empty-and-unrecorded, as locally (`verify_tables`).
"""

from __future__ import annotations

import re

import dagster as dg
import pandas as pd
from dagster_snowflake_pandas import SnowflakePandasIOManager

from .faults import fault_point
from .io_manager import COMMIT_GROUP, COMMITS, hold_for_group, table_name, verify_tables
from .warehouse import SnowflakeWarehouse, WarehouseConnection, identifier

STAGE_PREFIX = "__stage_"


class AtomicSnowflakeIOManager(SnowflakePandasIOManager):
    """`SnowflakePandasIOManager` (same fields, same tables) whose commit groups commit together."""

    def create_io_manager(self, context) -> dg.IOManager:
        fields = {name: getattr(self, name) for name in SnowflakeWarehouse.model_fields}
        warehouse = SnowflakeWarehouse(**{k: v for k, v in fields.items() if v is not None})
        return _AtomicGroups(super().create_io_manager(context), warehouse)


class _AtomicGroups(dg.IOManager):
    def __init__(self, inner: dg.IOManager, warehouse: SnowflakeWarehouse):
        self._inner = inner
        self._warehouse = warehouse
        self._held: dict = {}  # (run, step) -> {table: frame} of an open group

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        group = context.definition_metadata.get(COMMIT_GROUP)
        if not group:
            self._inner.handle_output(context, obj)
            return
        if context.has_asset_partitions:
            raise NotImplementedError(f"{context.asset_key.to_user_string()}: a commit group replaces whole tables; "
                                      "partitioned assets cannot be in one")
        if not isinstance(obj, pd.DataFrame):  # a StagedTable comes from DuckDB-only paths
            raise TypeError(f"{context.asset_key.to_user_string()}: Snowflake's IO manager stores DataFrames, "
                            f"not {type(obj).__name__}")
        frames = hold_for_group(self._held, context, obj, list(group))
        if frames is None:
            return
        with self._warehouse.connect() as conn:
            commit_tables(conn, frames, run_id=context.run_id)
        context.add_output_metadata({"committed_with": ", ".join(group)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        if upstream is not None and COMMIT_GROUP in upstream.definition_metadata:
            fault_point("before_load", table_name(context.asset_key))
            with self._warehouse.connect() as conn:
                verify_tables(conn, [table_name(context.asset_key)], strict=True)
        return self._inner.load_input(context)


def commit_tables(conn: WarehouseConnection, frames: dict[str, pd.DataFrame], run_id: str) -> None:
    """Replace every `schema.table` in `frames` and record the commit, in one Snowflake transaction."""
    suffix = re.sub(r"[^A-Za-z0-9]", "", run_id)[:12]
    stages = {name: _stage_name(name, suffix) for name in frames}
    try:
        # Everything that commits implicitly (schemas, tables, loads) happens before the transaction.
        for schema in {t.split(".")[0] for t in frames} | {COMMITS[0]}:
            conn.ensure_schema(schema)
        _drop_leftover_stages(conn, frames)
        conn.execute(f"create table if not exists {'.'.join(COMMITS)} (table_name varchar, run_id varchar, "
                     "row_count bigint, commit_group varchar, committed_at timestamp_tz)")
        columns = {name: _load_stage(conn, name, stages[name], frame) for name, frame in frames.items()}
        group = ", ".join(frames)
        with conn.transaction():
            for name, frame in frames.items():
                fault_point("before_replace", name)
                conn.execute(f"delete from {name}")
                fault_point("after_delete", name)
                if columns[name]:
                    cols = ", ".join(f'"{identifier(c)}"' for c in columns[name])
                    conn.execute(f"insert into {name} ({cols}) select {cols} from {stages[name]}")
                conn.execute(f"delete from {'.'.join(COMMITS)} where table_name = ?", [name])
                conn.execute(f"insert into {'.'.join(COMMITS)} select ?, ?, ?, ?, current_timestamp()",
                             [name, run_id, len(frame), group])
            fault_point("before_commit", group)
    finally:
        for stage in stages.values():
            conn.execute(f"drop table if exists {stage}")


def _stage_name(name: str, suffix: str) -> str:
    schema, table = name.split(".")
    return f"{schema}.{identifier(f'{STAGE_PREFIX}{table}_{suffix}')}"


def _load_stage(conn: WarehouseConnection, name: str, stage: str, frame: pd.DataFrame) -> list[str]:
    """Load `frame` into a fresh `stage` exactly as Dagster's pandas type handler writes a table
    (upper-case quoted columns, logical types), make sure `name` exists with every column, and
    return the columns to copy (none for an empty frame)."""
    from snowflake.connector.pandas_tools import write_pandas  # lazy: seconds to import

    schema, table = name.split(".")
    conn.execute(f"drop table if exists {stage}")
    if frame.empty:
        conn.prepare_table(schema, table, frame)  # the target holds no rows; it only has to exist
        return []
    upper = frame.rename(columns=str.upper)
    write_pandas(conn.raw, upper, table_name=stage.split(".")[1].upper(), schema=schema.upper(),
                 auto_create_table=True, use_logical_type=True, quote_identifiers=True,
                 table_type="transient")  # no Fail-safe copy of a scratch table holding PII
    conn.execute(f"create table if not exists {name} like {stage}")
    present = {c.upper() for c in _columns(conn, schema, table)}
    stage_table = stage.split(".")[1]
    types = dict(zip(_columns(conn, schema, stage_table), _columns(conn, schema, stage_table, "data_type")))
    for column in upper.columns:
        if column not in present:  # a new output column: add it before the transaction (DDL)
            conn.execute(f'alter table {name} add column "{column}" {types[column]}')
    return list(upper.columns)


def _drop_leftover_stages(conn: WarehouseConnection, frames: dict[str, pd.DataFrame]) -> None:
    """Stage tables of the group's tables that a killed run left (its `finally` never ran). The pool
    keeps writers to one at a time, so no other run is using them."""
    for schema in {t.split(".")[0] for t in frames}:
        prefixes = tuple(f"{STAGE_PREFIX}{t.split('.')[1]}_".lower() for t in frames if t.startswith(f"{schema}."))
        for leftover in _tables(conn, schema):
            if leftover.lower().startswith(prefixes):
                conn.execute(f"drop table if exists {schema}.{identifier(leftover)}")


def _tables(conn: WarehouseConnection, schema: str) -> list[str]:
    frame = conn.query("select table_name from information_schema.tables where lower(table_schema) = lower(?)",
                       [schema])
    return frame.iloc[:, 0].astype(str).tolist()


def _columns(conn: WarehouseConnection, schema: str, table: str, field: str = "column_name") -> list[str]:
    frame = conn.query(f"select {field} from information_schema.columns where lower(table_schema) = lower(?) "
                       "and lower(table_name) = lower(?) order by ordinal_position", [schema, table])
    return [str(v).upper() if field == "column_name" else str(v) for v in frame.iloc[:, 0]]
