"""What one resolution run returns and what the next run needs from it."""

from __future__ import annotations

import json
import mmap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from personalization_assets.identity.fellegi_sunter import FSModel


# Version of the saved state's meaning: the prepared columns, their hashes and the matcher that
# read them. A saved state of another version is not carried on: the next run is a full one.
STATE_VERSION = "identity-state-2"


class Prepared:
    """A run's prepared records, one row per crosswalk row and in its order: the cleaned feature
    values, the record hash and stable hashes of every blocking key, exact key, term-frequency
    value and whole profile (prepare.py, blocking.py). The next run reads only the columns and
    rows it needs: hash columns to find the saved records that share a block, a key or a value
    with a new record, cleaned values of those records only.

    Backed by an Arrow table; by an Arrow IPC file, memory-mapped a column at a time when a column
    is asked for, so that taking a few rows of a text column reads only their pages (Parquet would
    decode the whole column: ~1 s per million e-mail addresses) and no page stays resident after
    the run let go of the column (one map of the whole file kept ~0.4 GB resident at a million
    records); or by an
    earlier Prepared's rows ``keep`` followed by a table of new rows (what an incremental run
    returns)."""

    def __init__(self, table: pa.Table | None = None, path: str | Path | None = None,
                 base: "Prepared | None" = None, keep: np.ndarray | None = None):
        self.table, self.path, self.base, self.keep = table, path, base, keep
        if path is not None:
            self._schema = pa.ipc.open_file(pa.memory_map(str(path))).schema
            self._rows = len(self._own("record_hash"))

    @property
    def num_rows(self) -> int:
        own = self._rows if self.path is not None else self.table.num_rows
        return (self.keep.size if self.base is not None else 0) + own

    @property
    def columns(self) -> list[str]:
        return self._schema.names if self.path is not None else self.table.column_names

    def _own(self, name: str) -> pa.ChunkedArray:
        """One column of this Prepared's own rows (from its file: that column's bytes only)."""
        if self.path is None:
            return self.table.column(name)
        # the file's map only locates the column's buffers (nothing of it is read); each chunk is
        # then mapped on its own, its pages read in one call (MAP_POPULATE): faulting a column in a
        # page at a time cost ~35 ms of system time per 8 MB column here, populating it ~0.3 ms.
        # Its pages leave the process with the last array that uses them.
        whole = pa.memory_map(str(self.path))
        base = whole.read_buffer(1).address  # where the map starts (a read from its start)
        whole.seek(0)
        reader = pa.ipc.open_file(whole)
        at = self._schema.get_field_index(name)
        chunks = [_mapped(reader.get_batch(i).column(at), self.path, base) for i in range(reader.num_record_batches)]
        return pa.chunked_array(chunks, self._schema.field(name).type)

    def column(self, name: str, rows: np.ndarray | None = None) -> pa.ChunkedArray:
        """One column, all rows or the given row positions."""
        if self.base is not None:
            parts = [self.base.column(name, self.keep), self._own(name)]
            if any(pa.types.is_dictionary(p.type) for p in parts):  # text: dictionaries differ per part
                parts = [p.cast(pa.string()) if pa.types.is_dictionary(p.type) else p for p in parts]
            if parts[0].type != parts[1].type:  # a table read back from a warehouse: all-null text, large strings
                parts[0] = parts[0].cast(parts[1].type)
            col = pa.chunked_array(parts[0].chunks + parts[1].chunks, parts[1].type)
        else:
            col = self._own(name)
        return col.take(pa.array(rows, pa.int64())) if rows is not None else col

    def numpy(self, name: str) -> np.ndarray:
        """One column as numpy: a read-only view of a single chunk's buffer where it can be (a column
        of the memory-mapped file is not copied: ~8 MB of fresh pages per hash column at 1M records)."""
        col = self.column(name)
        if col.num_chunks == 1 and col.null_count == 0 and pa.types.is_primitive(col.type):
            return col.chunk(0).to_numpy(zero_copy_only=True)
        return col.to_numpy()

    def to_table(self) -> pa.Table:
        """All rows as one table (text as plain strings)."""
        cols = {}
        for n in self.columns:
            col = self.column(n)
            cols[n] = col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col
        return pa.table(cols)

    def write(self, path: str | Path) -> None:
        """All rows to one Arrow IPC file (text as plain strings: one dictionary per column would
        not survive the next run's appended rows)."""
        table = self.to_table()
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)


def _mapped(arr: pa.Array, path: str | Path, base: int) -> pa.Array:
    """``arr`` (its buffers lie in a map of ``path`` starting at address ``base``) on a map of its
    own bytes only, read in at once."""
    bufs = [b for b in arr.buffers() if b is not None and b.size]
    if not bufs:
        return arr
    start = min(b.address for b in bufs) - base
    first = start - start % mmap.ALLOCATIONGRANULARITY
    end = max(b.address + b.size for b in bufs) - base
    with open(path, "rb") as fh:
        own = pa.py_buffer(mmap.mmap(fh.fileno(), end - first, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                                     prot=mmap.PROT_READ, offset=first))
    moved = [own.slice(b.address - base - first, b.size) if b is not None and b.size else b for b in arr.buffers()]
    return pa.Array.from_buffers(arr.type, len(arr), moved, arr.null_count, arr.offset)


@dataclass
class ResolvedState:
    """The persisted outcome of earlier runs: crosswalk (with record hashes), evidence
    (including ``cannot_link`` rows from unmerges) and the fitted model."""

    crosswalk: pd.DataFrame
    evidence: pd.DataFrame
    model: FSModel | None = None
    # resolve()'s golden records of that run: an incremental run then rebuilds only the clusters
    # it touched (without it, every golden record is built again)
    golden: pd.DataFrame | None = None
    # the prepared records of that run (see Prepared): an incremental run then cleans and blocks
    # only new or changed records (without it, it prepares every record again)
    prepared: Prepared | None = None

    @classmethod
    def from_tables(cls, crosswalk: pd.DataFrame | None, evidence: pd.DataFrame | None,
                    golden: pd.DataFrame | None = None,
                    prepared: Prepared | None = None) -> "ResolvedState | None":
        """Rebuild the state from the persisted crosswalk and evidence tables (the model
        travels as the evidence row with rule 'model'), and optionally resolve()'s golden records."""
        evidence = evidence if evidence is not None else pd.DataFrame(columns=["rule"])
        if crosswalk is None or crosswalk.empty:
            unmerges = int((evidence["rule"] == "cannot_link").sum()) if "rule" in evidence else 0
            if unmerges:  # starting over here would silently merge again what someone split by hand
                raise ValueError(f"the crosswalk is empty but the merge evidence holds {unmerges} unmerge(s): the "
                                 "two tables are not from the same run. Restore both from one run, or re-apply the "
                                 "unmerges with a full rebuild.")
            return None
        if "record_hash" not in crosswalk:
            return None
        model = None
        if "detail" in evidence:
            rows = evidence.loc[evidence["rule"] == "model", "detail"].dropna()
            if len(rows):
                model = FSModel.from_dict(json.loads(rows.iloc[0]))
        return cls(crosswalk, evidence, model, golden, prepared)

    def cannot_link(self) -> set[tuple[str, str]]:
        ev = self.evidence
        if ev is None or ev.empty or "rule" not in ev:
            return set()
        rows = ev.loc[ev["rule"] == "cannot_link", ["left_record_id", "right_record_id"]]
        return set(map(tuple, rows.itertuples(index=False, name=None)))


@dataclass
class Resolution:
    golden: pd.DataFrame
    crosswalk: pd.DataFrame
    evidence: pd.DataFrame
    review: pd.DataFrame
    model: FSModel | None
    stats: dict = field(default_factory=dict)
    prepared: Prepared | None = None

    def state(self) -> ResolvedState:
        return ResolvedState(self.crosswalk, self.evidence, self.model, self.golden, self.prepared)
