"""Side tables: a table's new rows gathered beside it a committed chunk at a time, then swapped in.

A writer whose rows fit neither in memory nor in one open transaction appends them to
`<schema>.<table><suffix>`, each chunk committed, and then replaces the target's rows with them in
one transaction: readers see the old rows or the new ones, never a part. A run cut short leaves
the target as it was; its side tables are dropped on the way out, or by the next run on its way
in. Which target rows the new ones replace is the caller's rule (`SideTables.swap`). Works on
DuckDB and Snowflake alike (the DDL runs outside the transactions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from .warehouse import WarehouseConnection, identifier

if TYPE_CHECKING:
    import pandas as pd


class SideTables:
    """The side tables of `tables` in `schema`; `names` maps each target to its side table."""

    def __init__(self, conn: WarehouseConnection, schema: str, tables: Iterable[str], suffix: str):
        self.conn, self.schema = conn, identifier(schema)
        self.names = {identifier(t): identifier(f"{t}{suffix}") for t in tables}

    def side(self, table: str) -> str:
        """The qualified name of `table`'s side table, for the caller's SQL."""
        return f"{self.schema}.{self.names[table]}"

    def create_like_targets(self) -> None:
        """Empty side tables with their targets' columns (the targets exist)."""
        for table, side in self.names.items():
            self.conn.execute(f"create table {self.schema}.{side} as select * from {self.schema}.{table} limit 0")

    def insert(self, table: str, frame: pd.DataFrame) -> None:
        """Append rows to `table`'s side table, no transaction of its own (created from the frame if missing)."""
        self.conn.insert_frame(self.schema, self.names[table], frame)

    def append(self, frames: Mapping[str, pd.DataFrame]) -> None:
        """Commit these rows (target -> frame) to the side tables in one transaction."""
        with self.conn.transaction():
            for table, frame in frames.items():
                self.insert(table, frame)

    @contextlib.contextmanager
    def swap(self, columns: Sequence[str] | None = None) -> Iterator[SideTables]:
        """One transaction: the body deletes from the targets the rows the side tables replace (and
        does whatever must commit with them); then every side table's rows go into its target, by
        position, or by name for `columns`. A failure anywhere rolls it all back."""
        with self.conn.transaction():
            yield self
            cols = ", ".join(identifier(c) for c in columns) if columns else None
            for table, side in self.names.items():
                if cols:
                    self.conn.execute(f"insert into {self.schema}.{table} ({cols}) select {cols} "
                                      f"from {self.schema}.{side}")
                else:
                    self.conn.execute(f"insert into {self.schema}.{table} select * from {self.schema}.{side}")

    def drop(self) -> None:
        for side in self.names.values():
            self.conn.execute(f"drop table if exists {self.schema}.{side}")


@contextlib.contextmanager
def side_tables(conn: WarehouseConnection, schema: str, tables: Iterable[str], suffix: str) -> Iterator[SideTables]:
    """`SideTables` in `schema` (created if missing), dropped on the way in (a run cut short
    leaves them behind) and on the way out, swapped in or not."""
    sides = SideTables(conn, schema, tables, suffix)
    conn.ensure_schema(schema)  # before the drop, which names a table in it (a query when it exists)
    sides.drop()
    try:
        yield sides
    finally:
        sides.drop()
