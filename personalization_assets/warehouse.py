"""The plain warehouse connection: SQL on DuckDB locally and on Snowflake in production.

`WarehouseConnection` wraps one open DuckDB or Snowflake connection with the few operations the
platform needs (query, upsert, replace, all-or-nothing transactions); SQL is written once with `?`
placeholders. `identifier` guards the names interpolated into SQL. Domain code and command-line
tools use this module directly (`connect_duckdb` opens the local file); the Dagster resource
`resources/warehouse.py` chooses DuckDB or Snowflake per deployment and yields the same connection.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .faults import fault_point

if TYPE_CHECKING:  # pandas costs ~0.6 s to import; commands that only query DuckDB never need it
    import pandas as pd

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


_COMMITS = [0]  # transactions this process reached the commit of (the crash tests stop at the n-th)


def _fault_before_commit() -> None:
    """Test-only: with PERSONALIZATION_FAULT=before_commit@<n>, stop at the n-th commit of this
    process (`faults.py`); unset, one dictionary lookup."""
    _COMMITS[0] += 1
    fault_point("before_commit", str(_COMMITS[0]))


def identifier(name: str) -> str:
    """Guard for the names we interpolate into SQL (schemas, tables, columns)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


def column_types(conn, schema: str, table: str) -> dict[str, str]:
    """{column: data type} of `schema.table` (both lower-cased, in the table's order; empty when
    there is no such table), from any connection with `query`."""
    frame = conn.query("select lower(column_name) as c, lower(data_type) as t from information_schema.columns "
                       "where lower(table_schema) = lower(?) and lower(table_name) = lower(?) "
                       "order by ordinal_position", [schema, table])
    return dict(zip(frame["c"], frame["t"]))


class WarehouseConnection:
    """One open connection with the few operations the assets need."""

    def __init__(self, raw: Any, dialect: str):
        self.raw = raw
        self.dialect = dialect

    # -- reading -------------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        if self.dialect == "duckdb":
            return self.raw.execute(sql, list(params)).df()
        cur = self.raw.cursor()
        cur.execute(sql, list(params))
        frame = cur.fetch_pandas_all()
        frame.columns = [c.lower() for c in frame.columns]
        return frame

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """The result as plain tuples: for small results read by a command, which then never imports
        pandas (~0.6 s)."""
        if self.dialect == "duckdb":
            return self.raw.execute(sql, list(params)).fetchall()
        cur = self.raw.cursor()
        cur.execute(sql, list(params))
        return [tuple(r) for r in cur.fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        frame = self.query(sql, params)
        return None if frame.empty else frame.iat[0, 0]

    def table_exists(self, schema: str, table: str) -> bool:
        sql = (
            "select count(*) from information_schema.tables "
            "where lower(table_schema) = lower(?) and lower(table_name) = lower(?)"
        )
        return bool(self.scalar(sql, [schema, table]))

    # -- writing -------------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if self.dialect == "duckdb":
            self.raw.execute(sql, list(params))
        else:
            self.raw.cursor().execute(sql, list(params))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[WarehouseConnection]:
        """All or nothing: a failure inside leaves the warehouse as it was."""
        self.execute("begin transaction")
        try:
            yield self
        except BaseException:
            self.execute("rollback")
            raise
        _fault_before_commit()
        self.execute("commit")

    def ensure_schema(self, schema: str) -> None:
        exists = self.scalar(
            "select count(*) from information_schema.schemata where lower(schema_name) = lower(?)", [schema])
        if not exists:
            self.execute(f"create schema if not exists {identifier(schema)}")

    def prepare_table(self, schema: str, table: str, frame: pd.DataFrame) -> None:
        """Create schema and table (typed like `frame`) if missing.

        Call before `transaction()`: Snowflake commits implicitly on DDL, so tables must exist
        before the all-or-nothing part begins.
        """
        self.ensure_schema(schema)
        if self.table_exists(schema, table):
            return
        columns = ", ".join(f"{identifier(c)} {_sql_type(t, self.dialect)}" for c, t in frame.dtypes.items())
        self.execute(f"create table if not exists {identifier(schema)}.{identifier(table)} ({columns})")

    def insert_frame(self, schema: str, table: str, frame: pd.DataFrame) -> None:
        """Append rows; the table is created from the frame's columns if it does not exist."""
        self.prepare_table(schema, table, frame)
        if frame.empty:
            return
        target = f"{identifier(schema)}.{identifier(table)}"
        cols = ", ".join(identifier(c) for c in frame.columns)
        if self.dialect == "duckdb":
            self.raw.register("_incoming", frame)
            try:
                self.raw.execute(f"insert into {target} ({cols}) select {cols} from _incoming")
            finally:
                self.raw.unregister("_incoming")
            return
        from snowflake.connector.pandas_tools import write_pandas  # lazy: 4 s import

        write_pandas(self.raw, frame.rename(columns=str.upper), table_name=table.upper(),
                     schema=schema.upper(), quote_identifiers=False, use_logical_type=True)

    def replace_frame(self, schema: str, table: str, frame: pd.DataFrame) -> None:
        """Make the table hold exactly `frame` (call inside `transaction()`)."""
        if self.table_exists(schema, table):
            self.execute(f"delete from {identifier(schema)}.{identifier(table)}")
        self.insert_frame(schema, table, frame)

    def upsert_frame(
        self, schema: str, table: str, frame: pd.DataFrame, keys: Sequence[str]
    ) -> int:
        """Replace rows whose key is in `frame`, insert the rest. Returns rows written.

        DuckDB: delete-then-insert. Snowflake: `MERGE` (one statement per chunk, no DDL, so it
        stays inside the caller's transaction). Callers wrap it in `transaction()` so a reader
        never sees a half-applied batch.
        """
        if frame.empty:
            return 0
        frame = frame[~frame[list(keys)].astype(str).duplicated(keep="last")]  # keys compare as text
        if self.dialect == "snowflake":
            self.prepare_table(schema, table, frame)
            self._merge(f"{identifier(schema)}.{identifier(table)}", frame, keys)
            return len(frame)
        self.delete_keys(schema, table, frame[list(keys)])
        self.insert_frame(schema, table, frame)
        return len(frame)

    def _merge(self, target: str, frame: pd.DataFrame, keys: Sequence[str]) -> None:
        """Snowflake MERGE from bound VALUES. Each value is bound as text or number and cast to
        the column's type, so timestamps keep their offset whatever the session time zone."""
        columns = [identifier(c) for c in frame.columns]
        source = ", ".join(f"cast(column{i} as {_sql_type(frame.dtypes.iloc[i - 1], 'snowflake')}) as {c}"
                           for i, c in enumerate(columns, start=1))
        on = " and ".join(f"t.{identifier(k)} = s.{identifier(k)}" for k in keys)
        updates = ", ".join(f"{c} = s.{c}" for c in columns if c not in keys)
        matched = f"when matched then update set {updates} " if updates else ""
        row_marks = "(" + ", ".join("?" for _ in columns) + ")"
        for chunk in _chunks(_bindable_rows(frame), len(columns)):
            self.execute(
                f"merge into {target} t using (select {source} from values "
                f"{', '.join(row_marks for _ in chunk)}) s on {on} {matched}"
                f"when not matched then insert ({', '.join(columns)}) values ({', '.join(f's.{c}' for c in columns)})",
                [value for row in chunk for value in row])

    def present(self, table: str, column: str, values: Iterable[str]) -> set[str]:
        """Which of `values` the text of `column` of `table` (schema.table, trusted) holds."""
        text = f"cast({identifier(column)} as varchar)"
        return set(self.query_in(f"select distinct {text} from {table} where {text} in ({{values}})",
                                 values).iloc[:, 0])

    def query_in(self, sql: str, values: Iterable[Any], params: Sequence[Any] = (),
                 chunk: int = 1_000) -> pd.DataFrame:
        """`sql` run for a list of text values, which `{values}` stands for (`... in ({values})`,
        after every `?` of `params`): a lookup whose cost follows the values, not the table. On
        DuckDB the distinct values go in as one registered relation (a query per 1,000 bound
        values cost ~5 s CPU for a 150k-event file); elsewhere as chunks of `chunk` bound values,
        the results concatenated, so `sql` must not aggregate across values."""
        distinct = list(dict.fromkeys(str(v) for v in values))
        if not distinct:
            return self.query(sql.replace("{values}", "select cast(null as varchar) where 1 = 0"), params)
        import pandas as pd  # here: a command that never looks values up never imports it (~0.6 s)

        if self.dialect == "duckdb":
            self.raw.register("_query_in_values", pd.DataFrame({"v": pd.Series(distinct, dtype=object)}))
            try:
                return self.query(sql.replace("{values}", "select v from _query_in_values"), params)
            finally:
                self.raw.unregister("_query_in_values")
        parts = [distinct[start:start + chunk] for start in range(0, len(distinct), chunk)]
        return pd.concat([self.query(sql.replace("{values}", ", ".join("?" for _ in part)), [*params, *part])
                          for part in parts], ignore_index=True)

    def delete_keys(self, schema: str, table: str, keys: pd.DataFrame) -> None:
        """Delete the rows whose key columns equal a row of `keys` (compared as text)."""
        if not keys.empty and self.table_exists(schema, table):
            self._delete_keys(f"{identifier(schema)}.{identifier(table)}", keys.astype(str))

    def _delete_keys(self, target: str, keys: pd.DataFrame) -> None:
        match = " and ".join(f"cast(t.{identifier(k)} as varchar) = k.{identifier(k)}" for k in keys.columns)
        if self.dialect == "duckdb":
            self.raw.register("_keys", keys)
            try:
                self.raw.execute(f"delete from {target} t where exists (select 1 from _keys k where {match})")
            finally:
                self.raw.unregister("_keys")
            return
        # Snowflake: no DDL here (it would commit the open transaction), so delete in chunks.
        condition = " and ".join(f"cast({identifier(k)} as varchar) = ?" for k in keys.columns)
        rows = list(keys.itertuples(index=False, name=None))
        for start in range(0, len(rows), 500):
            chunk = rows[start:start + 500]
            where = " or ".join(f"({condition})" for _ in chunk)
            self.execute(f"delete from {target} where {where}", [v for row in chunk for v in row])


# Per MERGE statement: bound values, and bound text. Snowflake caps a VALUES list at 16,384 rows
# and advises statements (bound values included) under 1 MB, or it cannot retry them.
MERGE_BINDS = 8_000
MERGE_BYTES = 512 * 1024


def _chunks(rows: list[tuple], width: int) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    size = 0
    for row in rows:
        row_size = sum(len(str(v)) for v in row if v is not None) + width
        if chunk and ((len(chunk) + 1) * width > MERGE_BINDS or size + row_size > MERGE_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += row_size
    if chunk:
        yield chunk


def _bindable_rows(frame: pd.DataFrame) -> list[tuple]:
    """Plain Python values for the connector: None for missing, ISO text for timestamps."""
    import pandas as pd

    def plain(value):
        if value is None or (not isinstance(value, (list, dict, str)) and pd.isna(value)):
            return None
        if isinstance(value, (datetime.date, datetime.time)):  # pd.Timestamp is a datetime too
            return value.isoformat()
        return value.item() if hasattr(value, "item") else value

    return [tuple(plain(v) for v in row) for row in frame.astype(object).itertuples(index=False, name=None)]


def _sql_type(dtype, dialect: str) -> str:
    import pandas as pd

    kind = getattr(dtype, "kind", "O")
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamptz" if dialect == "duckdb" else "timestamp_tz"
    if kind == "M":
        return "timestamp"
    if kind == "b" or str(dtype) == "boolean":
        return "boolean"
    if kind in "iu" or str(dtype).startswith("Int"):
        return "bigint"
    if kind == "f":
        return "double"
    return "varchar"


@contextlib.contextmanager
def connect_duckdb(database: str | Path) -> Iterator[WarehouseConnection]:
    """Open the DuckDB file (created with its folder if missing), waiting a while for another
    process that holds it, and close it on exit."""
    import duckdb

    Path(database).parent.mkdir(parents=True, exist_ok=True)
    raw = _connect_duckdb(duckdb, str(database))
    try:
        yield WarehouseConnection(raw, "duckdb")
    finally:
        raw.close()


def _connect_duckdb(duckdb, database: str, wait_s: float = 15.0):
    """DuckDB lets one process open the file at a time; a step in the `warehouse_writer` pool only
    meets another process there briefly (a CLI command, a run ending), so retry for a while."""
    delay, waited = 0.05, 0.0
    while True:
        try:
            return duckdb.connect(database)
        except duckdb.IOException as exc:
            if "Could not set lock" not in str(exc):
                raise
            if waited >= wait_s:
                raise RuntimeError(f"the warehouse {database} stayed locked by another process for {wait_s:.0f} s "
                                   f"({exc}). Steps that open it must be in the pool `warehouse_writer`; stop the "
                                   "other process or wait for it.") from exc
        time.sleep(delay)
        waited += delay
        delay = min(delay * 2, 1.0)


def query_arrow_strings(conn: WarehouseConnection, sql: str, params: Sequence = ()) -> pd.DataFrame:
    """`conn.query`, but with text columns backed by the Arrow result (no Python string per value);
    the other columns are typed as `conn.query` types them. DuckDB only (elsewhere: `conn.query`)."""
    if conn.dialect != "duckdb":
        return conn.query(sql, params)
    import pandas as pd
    import pyarrow as pa

    table = conn.raw.sql(sql, params=list(params)).to_arrow_table()
    text = {f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)}
    rest = [c for c in table.column_names if c not in text]
    typed = conn.raw.from_arrow(table.select(rest)).df() if rest else None  # DuckDB's pandas types, same order
    return pd.DataFrame({c: pd.arrays.ArrowExtensionArray(table.column(c)) if c in text else typed[c]
                         for c in table.column_names}, copy=False)
