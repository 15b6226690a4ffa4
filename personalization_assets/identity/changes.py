"""Which records are new, changed or gone since the saved state, found in one DuckDB query.

The content hash of every raw record is computed where the rows are scanned (DuckDB reads the
pandas columns of plain text directly, no Arrow copy of a million strings), and the records are
joined with the saved crosswalk's record ids there too, so no Python index over a million ids
is built. The hash is the one features() gives (features_sql.py: ``hash`` of the HASHED columns
as text), so a record whose matching fields did not change keeps its saved hash.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from personalization_assets.identity.features_sql import HASHED, _arrow_text


@dataclass
class Change:
    """This run's records against the saved ones."""

    record_id: np.ndarray   # per record: its id as text
    record_hash: np.ndarray  # per record: content hash (uint64), as features() gives it
    prev_pos: np.ndarray    # per saved row: the record's position in this run, -1 = gone
    changed: np.ndarray     # per record: new, or its hash differs from the saved one
    consistent: bool        # the saved hashes are the saved crosswalk's record_hash (same run)
    id_hash: np.ndarray | None = None  # per record: id_hashes() of its id (None: ids were not plain text)


def record_ids(records: pd.DataFrame) -> np.ndarray:
    """The record ids as text (no copy when they are text already)."""
    return _ids(records)[0]


def _ids(records: pd.DataFrame) -> tuple[np.ndarray, bool]:
    """record_ids(), and whether they are the column's own text (what DuckDB scans)."""
    col = records["record_id"]
    if col.dtype == object and pd.api.types.infer_dtype(col, skipna=False) == "string":
        return col.to_numpy(), True
    return col.astype(str).to_numpy(), False


def id_hashes(ids: np.ndarray) -> np.ndarray:
    """DuckDB's hash of each record id's text (int64), as detect() gives it per record: a screen
    for looking ids up among a million without a Python hash table of them."""
    src = pa.table({"_row": pa.array(np.arange(len(ids), dtype=np.int64)), "record_id": pa.array(ids, pa.string())})
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")
        con.register("src", src)
        out = con.sql('select _row, hash("record_id"::varchar) as h from src').to_arrow_table()
    finally:
        con.close()
    h = np.empty(len(ids), np.uint64)
    h[out.column("_row").to_numpy()] = out.column("h").to_numpy()
    return h.view(np.int64)


def _scannable(records: pd.DataFrame) -> pd.DataFrame:
    """The HASHED columns as DuckDB should read them: plain-text object columns as they are,
    anything else (dates, numbers, mixed objects) as Arrow text, as features_sql converts them."""
    cols, converted = {}, False
    for c in HASHED:
        if c not in records:
            continue
        col = records[c]
        plain = col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty")
        converted |= not plain
        cols[c] = col if plain else pd.Series(pd.arrays.ArrowExtensionArray(_arrow_text(col)), index=col.index)
    # the records themselves when nothing was converted: a new frame of their columns copies them
    return pd.DataFrame(cols, copy=False) if converted else records


def detect(records: pd.DataFrame, saved_ids, saved_hash: np.ndarray, saved_hex) -> Change:
    """Hash every record and line it up with the saved rows: ``saved_ids`` and ``saved_hex`` (the
    crosswalk's record_id and record_hash, Arrow text) and ``saved_hash`` (the prepared records')."""
    n = len(records)
    rid, plain = _ids(records)
    src = _scannable(records)
    hashed = ", ".join(f'"{c}"::varchar' for c in HASHED if c in records)
    saved = pa.table({"record_id": saved_ids, "h": pa.array(saved_hash, pa.uint64()),
                      "row": pa.array(np.arange(len(saved_hash), dtype=np.int64))})
    pos = pa.table({"pos": pa.array(np.arange(n, dtype=np.int64))})
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")
        con.register("src", src)
        con.register("pos_", pos)
        con.register("saved", saved)
        out = con.sql(f"""
            with now as (select p.pos, s."record_id"::varchar as record_id, hash({hashed}) as h,
                                hash(s."record_id"::varchar) as idh
                         from src s positional join pos_ p)
            select coalesce(now.pos, -1) as pos, coalesce(now.h, 0) as h, coalesce(saved.row, -1) as row,
                   saved.h is distinct from now.h as changed, coalesce(now.idh, 0) as idh
            from now full outer join saved using (record_id)""").to_arrow_table()
    finally:
        con.close()
    # no nulls left: every column converts to numpy without a float or object detour
    p, row = out.column("pos").to_numpy(), out.column("row").to_numpy()
    here, was = p >= 0, row >= 0
    p_here = p[here]
    record_hash = np.empty(n, np.uint64)
    record_hash[p_here] = out.column("h").to_numpy()[here]
    changed = np.zeros(n, bool)
    changed[p_here] = out.column("changed").to_numpy(zero_copy_only=False)[here]
    prev_pos = np.full(len(saved_hash), -1, np.int64)
    both = here & was
    prev_pos[row[both]] = p[both]
    id_hash = None
    if plain:  # the ids DuckDB hashed are rid itself
        id_hash = np.empty(n, np.uint64)
        id_hash[p_here] = out.column("idh").to_numpy()[here]
        id_hash = id_hash.view(np.int64)
    return Change(rid, record_hash, prev_pos, changed, _same_hashes(saved_hex, saved_hash), id_hash)


def _same_hashes(hexes, hashes: np.ndarray) -> bool:
    """Whether the crosswalk's record_hash texts (16 hex digits each) spell ``hashes``, compared
    as bytes a chunk at a time (no Python string per row, no copy of the ~16 MB of text)."""
    chunks = hexes.chunks if isinstance(hexes, pa.ChunkedArray) else [hexes]
    if sum(len(a) for a in chunks) != hashes.size:
        return False
    want = hex_hashes(hashes).view(np.uint8)
    at = 0
    for a in chunks:
        if not len(a):
            continue
        if a.null_count or not pa.types.is_string(a.type):
            return False
        off = np.frombuffer(a.buffers()[1], np.int32)[a.offset:a.offset + len(a) + 1]
        if not (np.diff(off) == 16).all():
            return False
        text = np.frombuffer(a.buffers()[2], np.uint8)[off[0]:off[-1]]
        if not np.array_equal(text, want[at * 16:(at + len(a)) * 16]):
            return False
        at += len(a)
    return True


# the two hex digits of every byte, as the 2 bytes of one uint16 (first digit in the low byte: little-endian)
_HEX2 = np.frombuffer(b"".join(bytes((a, b)) for a in b"0123456789abcdef" for b in b"0123456789abcdef"), "<u2")


def hex_hashes(hashes: np.ndarray) -> np.ndarray:
    """uint64 record hashes as 16-char lowercase hex bytes (the crosswalk's record_hash), vectorized:
    one table lookup per byte."""
    b = np.ascontiguousarray(hashes.astype(">u8")).view(np.uint8)
    return np.ascontiguousarray(_HEX2[b]).view("S16").ravel()
