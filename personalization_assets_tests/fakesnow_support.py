"""Test-only adjustments that let fakesnow run what real Snowflake runs.

fakesnow emulates MERGE with a temporary table, and records a (NULL) comment for it in its own
catalog database. Inside an explicit transaction DuckDB refuses that second database write
("a single transaction can only write to a single attached database"), so a MERGE inside
`begin transaction` fails on fakesnow although it works on Snowflake. `merge_in_transactions()`
drops the empty comment record. The emulation also creates that table in the session's current
schema, which fakesnow asserts is set; Snowflake needs none (our SQL names every schema), so a
session opened without one gets PUBLIC here. fakesnow's cursor has no `fetch_pandas_batches`
(Snowflake's result chunks, which `quality/table_checks.read_chunks` streams): here it hands over
the whole result as one batch. Nothing else changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def merge_in_transactions() -> Iterator[None]:
    import fakesnow.transforms as transforms
    from fakesnow.conn import FakeSnowflakeConnection
    from fakesnow.cursor import FakeSnowflakeCursor

    original = transforms.extract_comment_on_table
    original_init = FakeSnowflakeConnection.__init__

    def init_with_schema(self, duck_conn, results_cache, database=None, schema=None, *args, **kwargs):
        original_init(self, duck_conn, results_cache, database, schema or (database and "PUBLIC"), *args, **kwargs)

    def without_empty_comment(expression):
        result = original(expression)
        recorded = result.args.get("table_comment")
        if recorded and recorded[1] is None:
            del result.args["table_comment"]
        return result

    transforms.extract_comment_on_table = without_empty_comment
    FakeSnowflakeConnection.__init__ = init_with_schema
    batches = getattr(FakeSnowflakeCursor, "fetch_pandas_batches", None)
    if batches is None:
        FakeSnowflakeCursor.fetch_pandas_batches = lambda self: iter([self.fetch_pandas_all()])
    try:
        yield
    finally:
        if batches is None:
            del FakeSnowflakeCursor.fetch_pandas_batches
        transforms.extract_comment_on_table = original
        FakeSnowflakeConnection.__init__ = original_init
