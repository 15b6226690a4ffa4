"""The local IO manager: asset DataFrames as DuckDB tables `<schema>.<table>`, written all or nothing.

Dagster's DuckDB IO manager commits a DELETE, then an INSERT: a process killed in between leaves
the table empty, and the next run reads the empty table as truth. Here a table is replaced inside
one transaction, and the outputs of a step that must agree with each other (golden records,
crosswalk and merge evidence) are held until the last of them arrives and then committed together.
Every commit is recorded in `ops.table_commits` (rows, run). A read of a table that a commit left
with rows but that is empty now, or of an empty table no commit wrote, is refused rather than taken
for truth. Fewer rows than recorded is allowed: erasure deletes a person's rows in place.

An output too big to pass through Python is written by the step itself into a staged table beside
its target (`StagedTable`): the commit renames it into place, in the same transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from .faults import fault_point
from .warehouse import DuckDBWarehouse, WarehouseConnection, identifier

# Output metadata: the `schema.table` names a step's outputs commit together (all or none).
COMMIT_GROUP = "warehouse/commit_group"
COMMITS = ("ops", "table_commits")


class TableStateError(Exception):
    """A table does not hold what its last committed write recorded."""


@dataclass(frozen=True)
class StagedTable:
    """An output the step already wrote into the warehouse, as the table `name` in its target's
    schema: the commit renames it to the target (no rows pass through Python)."""

    name: str


class AtomicDuckDBIOManager(dg.ConfigurableIOManager):
    """Stores and loads pandas DataFrames in the DuckDB file `database`, one table per asset key
    (or renames a step's `StagedTable` into place)."""

    database: str
    memory_limit: str | None = None  # as DuckDBWarehouse's (env var, else derived from physical memory)
    temp_directory: str | None = None
    _held: dict = PrivateAttr(default_factory=dict)  # (run, step) -> {table: frame} of an open group

    @contextlib.contextmanager
    def _connect(self) -> Iterator[WarehouseConnection]:
        with DuckDBWarehouse(database=self.database, memory_limit=self.memory_limit,
                                   temp_directory=self.temp_directory).connect() as conn:
            yield conn

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | StagedTable) -> None:
        if context.has_asset_partitions:
            raise NotImplementedError(
                f"{context.asset_key.to_user_string()} is partitioned: this IO manager replaces whole tables; "
                "write a partitioned table's window with the `warehouse` resource (see assets/common.write_window)")
        name = table_name(context.asset_key)
        group = list(context.definition_metadata.get(COMMIT_GROUP) or [name])
        frames = hold_for_group(self._held, context, obj, group)
        if frames is None:
            return
        with self._connect() as conn:
            commit_tables(conn, frames, run_id=context.run_id)
        context.add_output_metadata({"committed_with": ", ".join(group)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        name = table_name(context.asset_key)
        where, params = "", []
        upstream = context.upstream_output
        expr = upstream.definition_metadata.get("partition_expr") if upstream is not None else None
        if context.has_asset_partitions and expr:
            window = context.asset_partitions_time_window
            where, params = f" where {identifier(expr)} >= ? and {identifier(expr)} < ?", [window.start, window.end]
        # Tables of a commit group are only ever written by `commit_tables`: an unrecorded empty one is torn.
        strict = upstream is not None and COMMIT_GROUP in upstream.definition_metadata
        # An input's metadata `columns` (Dagster's convention) reads only those columns (a few of a
        # wide table's, not its payload texts).
        meta = context.definition_metadata or {}
        columns = meta.get("columns")
        fault_point("before_load", name)
        with self._connect() as conn:
            verify_tables(conn, [name], strict=strict)
            select = ", ".join(identifier(c) for c in columns) if columns else "*"
            return conn.query(f"select {select} from {name}{where}", params)


def hold_for_group(held_by_step: dict, context: dg.OutputContext, obj,
                   group: Sequence[str]) -> dict | None:
    """Keep this output until every table of its commit group has arrived from the same step;
    then return all the group's frames (to be written in one transaction), else None."""
    name = table_name(context.asset_key)
    if name not in group:
        raise ValueError(f"{COMMIT_GROUP} of {name} must list {name} itself, not only {list(group)}")
    held = held_by_step.setdefault((context.run_id, context.step_key), {})
    held[name] = obj
    missing = [t for t in group if t not in held]
    if missing:
        fault_point("output_held", name)
        context.log.debug(f"{name} held until {', '.join(missing)} arrive: they commit together")
        return None
    return {t: held.pop(t) for t in group}


def table_name(key: dg.AssetKey) -> str:
    if len(key.path) != 2:
        raise ValueError(f"asset key {key.to_user_string()} must be [schema, table] to live in the warehouse")
    return ".".join(identifier(part) for part in key.path)


def commit_tables(conn: WarehouseConnection, frames: dict[str, pd.DataFrame | StagedTable], run_id: str) -> None:
    """Replace every `schema.table` in `frames` (a frame, or a staged table renamed into place)
    and record the commit, in one transaction."""
    for schema in {t.split(".")[0] for t in frames} | {COMMITS[0]}:
        conn.ensure_schema(schema)
    conn.execute(f"create table if not exists {'.'.join(COMMITS)} (table_name varchar, run_id varchar, "
                 "row_count bigint, commit_group varchar, committed_at timestamptz)")
    group = ", ".join(frames)
    now = datetime.now(timezone.utc)
    with conn.transaction():
        for name, frame in frames.items():
            fault_point("before_replace", name)
            rows = _replace(conn, name, frame)
            conn.execute(f"delete from {'.'.join(COMMITS)} where table_name = ?", [name])
            conn.execute(f"insert into {'.'.join(COMMITS)} values (?, ?, ?, ?, ?)",
                         [name, run_id, rows, group, now])


def _replace(conn: WarehouseConnection, name: str, frame: pd.DataFrame | StagedTable) -> int:
    """Replace table `name` by the frame or staged table; its row count."""
    # Drop and create rather than delete and insert: the columns follow the frame, and the old rows'
    # bytes go with the old table (deleted strings stay readable in a DuckDB file otherwise).
    if isinstance(frame, StagedTable):
        schema, table = name.split(".")
        staged_schema, staged = frame.name.split(".")
        if staged_schema != schema:
            raise ValueError(f"staged table {frame.name} must be in {name}'s schema to be renamed into place")
        if not conn.table_exists(staged_schema, staged):
            raise TableStateError(f"staged table {frame.name} for {name} does not exist: nothing to commit")
        rows = int(conn.scalar(f"select count(*) from {frame.name}"))
        conn.execute(f"drop table if exists {name}")
        fault_point("after_delete", name)
        conn.execute(f"alter table {frame.name} rename to {table}")
        return rows
    conn.execute(f"drop table if exists {name}")
    fault_point("after_delete", name)
    conn.raw.register("_frame", frame)
    try:
        conn.execute(f"create table {name} as select * from _frame")
    finally:
        conn.raw.unregister("_frame")
    return len(frame)


def verify_tables(conn: WarehouseConnection, names: Sequence[str], strict: bool = True) -> None:
    """Refuse empty tables that a completed commit left with rows; with `strict`, also an empty
    table no commit recorded (tables written by the `warehouse` resource have no record)."""
    recorded = {}
    if conn.table_exists(*COMMITS):
        rows = conn.query(f"select table_name, run_id, row_count from {'.'.join(COMMITS)}")
        recorded = {r.table_name: (r.run_id, int(r.row_count)) for r in rows.itertuples()}
    for name in names:
        schema, table = name.split(".")
        if not conn.table_exists(schema, table):
            raise TableStateError(f"{name} does not exist yet: materialize {schema}/{table} first")
        rows = int(conn.scalar(f"select count(*) from {name}"))
        if rows == 0 and name in recorded and recorded[name][1] > 0:
            run_id, expected = recorded[name]
            raise TableStateError(
                f"{name} holds 0 rows, but its last committed write (run {run_id}) left {expected}: it was emptied "
                f"outside a run. Rematerialize {schema}/{table} (and what it was written with) to rebuild it.")
        if strict and name not in recorded and rows == 0:
            raise TableStateError(
                f"{name} is empty and no completed write recorded it (the mark of an interrupted delete-then-"
                f"insert): refusing to read it as truth. Rematerialize {schema}/{table} to rebuild it.")
