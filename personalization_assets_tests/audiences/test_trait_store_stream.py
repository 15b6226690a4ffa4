"""The computed traits reach the trigger engine's store a chunk at a time: every tracked customer
once, with its values, and a snapshot sync still replaces what the store held before."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from personalization_assets.audiences.traits_store import TraitReader, TraitStore, trait_rows
from personalization_assets.quality.table_checks import DUCKDB_VECTOR
from personalization_assets.resources.warehouse import DuckDBWarehouse

AS_OF = datetime(2026, 5, 4, 12, tzinfo=timezone.utc)
N = 5_000  # three DuckDB chunks of 2,048 rows


def test_traits_stream_in_chunks_into_the_store(tmp_path):
    keys = [f"k{i:05d}" for i in range(N)]
    snapshot = pd.DataFrame({"customer_key": keys, "as_of": pd.Timestamp(AS_OF),
                             "views_7d": [i % 9 for i in range(N)],
                             "spend_30d": [None if i % 4 else i * 10.0 for i in range(N)]})
    identity = pd.DataFrame({"identity_type": ["user_id"] * (N - 1) + ["email_hash"],  # the last is not tracked
                             "identity": [f"u{i:05d}" for i in range(N)], "customer_key": keys})
    warehouse = DuckDBWarehouse(database=str(tmp_path / "wh.duckdb"))
    store = TraitStore(tmp_path / "store.sqlite")
    store.sync([("gone", {"views_7d": 1})], AS_OF)  # a customer the next snapshot no longer has
    with warehouse.connect() as conn:
        for (schema, table), frame in {("marts", "computed_traits"): snapshot, ("core", "identity_map"): identity}.items():
            conn.prepare_table(schema, table, frame)
            conn.replace_frame(schema, table, frame)
        rows = trait_rows(conn, has_identity=True, chunk_rows=DUCKDB_VECTOR)
        assert not isinstance(rows, list)  # a stream, read as the store consumes it
        assert store.sync(rows, AS_OF) == N - 1
    reader = TraitReader(tmp_path / "store.sqlite")
    try:
        assert reader.traits("gone") == ({}, None)
        assert reader.traits("u00004", AS_OF) == ({"views_7d": 4, "spend_30d": 40}, AS_OF)
        assert reader.traits("u04999", AS_OF) == ({}, None)  # identity_type email_hash: not a userId
        for i in (0, 2047, 2048, 4095, 4096, 4998):
            assert reader.traits(f"u{i:05d}", AS_OF)[0]["views_7d"] == i % 9
    finally:
        reader.close()
