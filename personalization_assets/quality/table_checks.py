"""Pandera validation of a warehouse table in bounded memory.

The table is read a chunk at a time (only the model's columns) and each chunk is validated against
the model without its uniqueness rules; failure counts and examples add up across chunks. The
uniqueness rules (`unique=True`, `Config.unique`) span chunks, so they run in the warehouse as
`group by ... having count(*) > 1` and report like the others. Memory follows the chunk, not the
table. Plain Python: the asset check built on it is in `assets/checks.py`.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterable, Iterator, Sequence

import pandas as pd
import pandera.pandas as pa

from ..heap import collecting
from ..warehouse import WarehouseConnection, identifier
from .checks import MAX_EXAMPLES, run_schema

CHUNK_ROWS = 100_000  # rows validated at a time
DUPLICATE_PARTITION_ROWS = 20_000_000  # rows whose keys one GROUP BY of `duplicate_failures` holds (DuckDB)
DUCKDB_VECTOR = 2048  # DuckDB hands results over in vectors of this many rows


def unique_sets(model: type[pa.DataFrameModel]) -> list[tuple[str, ...]]:
    """The column sets the model wants unique: each `unique=True` column, then `Config.unique`."""
    schema = model.to_schema()
    sets = [(name,) for name, column in schema.columns.items() if column.unique]
    if schema.unique:
        sets.append(tuple([schema.unique] if isinstance(schema.unique, str) else schema.unique))
    return sets


@functools.cache
def chunk_schema(model: type[pa.DataFrameModel]) -> pa.DataFrameSchema:
    """The model without its uniqueness rules: what one chunk can be judged on alone."""
    schema = model.to_schema()
    unique = [name for name, column in schema.columns.items() if column.unique]
    stripped = schema.update_columns({name: {"unique": False} for name in unique}) if unique else copy.deepcopy(schema)
    stripped.unique = None
    return stripped


def validate_chunks(model: type[pa.DataFrameModel], chunks: Iterable[pd.DataFrame]) -> tuple[int, list[dict]]:
    """Rows seen and the failure summary of `chunks` against the model without its uniqueness rules
    (`duplicate_failures` has those). Row-level failures add up; a schema-level failure (a dtype,
    a missing column: no row) is reported once however many chunks show it. `example_rows` count
    from the first row of the first chunk."""
    rows, merged = 0, {}
    for chunk in collecting(chunks):
        positions = chunk.set_axis(pd.RangeIndex(len(chunk)), axis=0, copy=False)  # row numbers, not labels
        for failure in run_schema(chunk_schema(model), positions):
            key = (failure["column"], failure["check"])
            seen = merged.setdefault(key, {**failure, "count": 0, "examples": [], "example_rows": []})
            if not failure["example_rows"]:  # schema-level: once per distinct failure case
                new = [e for e in failure["examples"] if e not in seen["examples"]]
                seen["count"] += len(new)
                seen["examples"] += new
                continue
            seen["count"] += failure["count"]
            room = MAX_EXAMPLES - len(seen["examples"])
            seen["examples"] += failure["examples"][:room]
            seen["example_rows"] += [rows + i for i in failure["example_rows"][:room]]
        rows += len(chunk)
    return rows, [merged[k] for k in sorted(merged)]


def duplicate_failures(conn: WarehouseConnection, table: str, model: type[pa.DataFrameModel],
                       where: str = "1 = 1", params: Sequence = (),
                       partition_rows: int = DUPLICATE_PARTITION_ROWS) -> list[dict]:
    """The model's uniqueness rules, in the warehouse, as Pandera reports them on a whole frame:
    per column of a rule, every row of a duplicated key whose value in that column is not null
    (`field_uniqueness` for one column, `multiple_fields_uniqueness` for several). Examples are the
    values of the first duplicated keys in key order; there are no row numbers. On DuckDB the keys
    are grouped a hash partition of about `partition_rows` rows at a time (a key's rows share its
    partition): one GROUP BY over 100M message ids ran out of memory under a 768 MB cap."""
    rules = unique_sets(model)
    if not rules:
        return []
    parts = 1
    if conn.dialect == "duckdb":
        rows = int(conn.scalar(f"select count(*) from {table} where ({where})", params))
        parts = max(1, math.ceil(rows / partition_rows))
    out = []
    for columns in rules:
        keys = ", ".join(identifier(c) for c in columns)
        # Pandera leaves out nulls of a one-column rule; a several-column rule compares them as equal.
        nonnull = f" and {identifier(columns[0])} is not null" if len(columns) == 1 else ""
        counts, firsts = [0] * len(columns), []
        for part in range(parts):
            within = f" and hash({keys}) % {parts} = {part}" if parts > 1 else ""
            groups = (f"select {keys}, count(*) as n from {table} where ({where}){nonnull}{within} "
                      f"group by {keys} having count(*) > 1")
            found = conn.rows("select " + ", ".join(
                f"coalesce(sum(case when {identifier(c)} is not null then n else 0 end), 0)"
                for c in columns) + f" from ({groups}) d", params)[0]
            counts = [total + int(n) for total, n in zip(counts, found)]
            if any(found):  # the part's first duplicated keys; the first of all parts are among them
                firsts.append(conn.query(f"{groups} order by {keys} limit {MAX_EXAMPLES}", params))
        first = firsts[0] if len(firsts) == 1 else (pd.concat(firsts, ignore_index=True).sort_values(
            list(columns), kind="stable").head(MAX_EXAMPLES) if firsts else None)
        check = "field_uniqueness" if len(columns) == 1 else "multiple_fields_uniqueness"
        for i, column in enumerate(columns):
            if not counts[i]:
                continue
            examples = [str(v)[:120] for v, n in zip(first[column], first["n"]) if not pd.isna(v)
                        for _ in range(int(n))]
            out.append({"column": column, "check": check, "count": counts[i],
                        "examples": examples[:MAX_EXAMPLES], "example_rows": []})
    return out


def read_chunks(conn: WarehouseConnection, sql: str, params: Sequence = (),
                rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The result of `sql` as frames of about `rows` rows, streamed: never the whole result at once.
    At least one frame (empty, with the result's columns and types) comes out. Run no other
    statement on `conn` until the iterator is exhausted (DuckDB streams on the connection)."""
    if conn.dialect == "duckdb":
        result = conn.raw.execute(sql, list(params))
        frame = result.fetch_df_chunk(max(1, rows // DUCKDB_VECTOR))
        yield frame
        while len(frame):
            frame = result.fetch_df_chunk(max(1, rows // DUCKDB_VECTOR))
            if len(frame):
                yield frame
        return
    cur = conn.raw.cursor()
    cur.execute(sql, list(params))
    emitted = False
    for frame in cur.fetch_pandas_batches():  # Snowflake's own result chunks
        frame.columns = [c.lower() for c in frame.columns]
        emitted = True
        yield frame
    if not emitted:
        yield pd.DataFrame(columns=[d[0].lower() for d in cur.description])


def read_chunks_aside(conn: WarehouseConnection, sql: str, params: Sequence = (),
                      rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """`read_chunks` through a second connection, so `conn` stays free for writes while the chunks
    stream (DuckDB streams a result on its connection; Snowflake's cursor already is a second one)."""
    if conn.dialect != "duckdb":
        yield from read_chunks(conn, sql, params, rows)
        return
    aside = WarehouseConnection(conn.raw.cursor(), "duckdb")
    try:
        yield from read_chunks(aside, sql, params, rows)
    finally:
        aside.raw.close()


def validate_table(conn: WarehouseConnection, table: str, model: type[pa.DataFrameModel], where: str = "1 = 1",
                   params: Sequence = (), chunk_rows: int = CHUNK_ROWS) -> tuple[int, list[dict]]:
    """Rows checked and the failure summary of the rows of `table` (schema.table, trusted) that
    `where` selects, against `model`: the same failures `run_model` finds on the whole frame (the
    row numbers and the examples of duplicates may differ), in memory that follows `chunk_rows`."""
    columns = ", ".join(identifier(c) for c in model.to_schema().columns)
    duplicates = duplicate_failures(conn, table, model, where, params)  # before the stream holds `conn`
    rows, failures = validate_chunks(
        model, read_chunks(conn, f"select {columns} from {table} where {where}", params, chunk_rows))
    by_key = {(f["column"], f["check"]): f for f in [*failures, *duplicates]}
    return rows, [by_key[k] for k in sorted(by_key)]
