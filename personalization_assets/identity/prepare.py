"""Turn staging customer rows into matching features.

Matching needs its own, harsher normal form than staging (no case, no accents, no
punctuation) and must turn placeholder values into nulls so they never act as evidence;
the text cleaning itself runs in DuckDB (features_sql.py). Non-Latin letters are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import jellyfish
import numpy as np
import pandas as pd
import pyarrow as pa

from personalization_assets.identity.features_sql import CODE_OUT, HASHED, TEXT_OUT, _arrow_text, clean_frame
from personalization_assets.identity.nicknames import canonical_names


@dataclass
class Features:
    """The matching view of a set of records, one position per record: int32 codes of each
    feature column (-1 = missing), the distinct values behind the codes of the text columns,
    record ids and content hashes. Codes, not strings, so a million records stay compact."""

    codes: dict[str, np.ndarray]
    values: dict[str, pa.Array]
    record_id: np.ndarray
    record_hash: np.ndarray

    def __len__(self) -> int:
        return self.record_id.size

    def text(self, col: str) -> np.ndarray:
        """The column decoded to strings (None where missing), for inspection and tests."""
        values = np.asarray(self.values[col].to_pylist() + [None], dtype=object)
        return values[self.codes[col]]  # code -1 picks the trailing None


def on_values(codes: np.ndarray, values: pa.Array, fn) -> tuple[np.ndarray, pa.Array]:
    """Apply ``fn`` (str -> str | None) once per distinct value: codes and values of the result."""
    res_codes, uniq = pd.factorize(np.array([fn(v) for v in values.to_pylist()], dtype=object),
                                   use_na_sentinel=True)
    new = np.where(codes >= 0, res_codes[np.maximum(codes, 0)], -1) if res_codes.size \
        else np.full(codes.size, -1)
    return new.astype(np.int32), pa.array(np.asarray(uniq, dtype=object), type=pa.string())


def features(records: pd.DataFrame) -> Features:
    """The comparable and blockable columns of ``records`` (positional)."""
    codes, values, record_hash = clean_frame(records)
    return _derived(Features(codes, values, records["record_id"].astype(str).to_numpy(), record_hash))


def _derived(f: Features) -> Features:
    """Adds the columns derived per distinct value: canonical first name and the name sounds."""
    nick = canonical_names()
    for name, source, fn in (("fn_canon", "fn", lambda v: nick.get(v, v)), ("ln_sdx", "ln", jellyfish.soundex),
                             ("fn_sdx", "fn", jellyfish.soundex)):
        f.codes[name], f.values[name] = on_values(f.codes[source], f.values[source], fn)
    return f


# the cleaned columns a run saves per record, so that the next run prepares only new or changed records
SAVED = TEXT_OUT + CODE_OUT
MISSING = -1  # hash of a missing value


def saved_columns(f: Features, rows: np.ndarray | None = None, columns: tuple[str, ...] = SAVED) -> dict[str, pa.Array]:
    """The cleaned values of ``rows`` (all records by default) as Arrow dictionary arrays (no string
    per record), to be written beside the crosswalk."""
    out = {}
    for col in columns:
        c = f.codes[col] if rows is None else f.codes[col][rows]
        out[col] = pa.DictionaryArray.from_arrays(pa.array(c, mask=c < 0), f.values[col])
    return out


def from_saved(columns: dict[str, pa.Array], record_id: np.ndarray, record_hash: np.ndarray,
               coded: dict[str, tuple[np.ndarray, pa.Array]] | None = None) -> Features:
    """Features of records whose cleaned values were saved by an earlier run (see saved_columns),
    the same as features() of their raw rows (of the SAVED columns given: all of them for a whole
    Features). ``coded``: columns whose codes and values are known already (coded_by_hash)."""
    codes, values = {}, {}
    for col in SAVED:
        if coded and col in coded:
            codes[col], values[col] = coded[col]
            continue
        if col not in columns:
            continue
        arr = columns[col]
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(pa.string())
        enc = arr.dictionary_encode()
        c = enc.indices.to_numpy(zero_copy_only=False)
        if enc.indices.null_count:
            c = np.where(enc.indices.is_null().to_numpy(zero_copy_only=False), -1, c)
        codes[col], values[col] = c.astype(np.int32), enc.dictionary
    return _derived(Features(codes, values, np.asarray(record_id, object), np.asarray(record_hash, np.uint64)))


def coded_by_hash(vh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of a column from its stable value hashes (value_hashes; MISSING where missing), numbered
    in order of first appearance as dictionary_encode numbers the values, and the position of each
    code's first record (where its value is read): no hashing of the text again."""
    held = np.flatnonzero(vh >= 0)
    sub, uniq = pd.factorize(vh[held])
    codes = np.full(vh.size, -1, np.int32)
    codes[held] = sub
    first = np.empty(len(uniq), np.int64)
    first[sub[::-1]] = held[::-1]  # the last write of each code is its first record
    return codes, first


def concat(parts: list[Features]) -> Features:
    """The records of several Features, in order, as one (codes re-encoded on the joint values)."""
    columns = {col: pa.chunked_array([pa.DictionaryArray.from_arrays(pa.array(p.codes[col], mask=p.codes[col] < 0),
                                                                     p.values[col]).cast(pa.string())
                                      for p in parts], pa.string()) for col in SAVED}
    return from_saved(columns, np.concatenate([p.record_id for p in parts]),
                      np.concatenate([p.record_hash for p in parts]))


def value_hashes(codes: np.ndarray, values: pa.Array) -> np.ndarray:
    """A stable int64 per record for the value of a column (MISSING where missing): equal values
    give equal hashes in every run, unlike the run-local codes."""
    # the values are distinct already: no factorizing before hashing (categorize=False)
    vh = (pd.util.hash_array(values.to_numpy(zero_copy_only=False).astype(object), categorize=False)
          >> np.uint64(1)).astype(np.int64)
    return np.where(codes >= 0, vh[np.maximum(codes, 0)] if vh.size else 0, MISSING).astype(np.int64)


def mix(*parts: np.ndarray) -> np.ndarray:
    """One stable int64 per tuple of value hashes; MISSING if any part is missing."""
    out = np.zeros(parts[0].size, np.uint64)
    missing = np.zeros(parts[0].size, bool)
    with np.errstate(over="ignore"):
        for p in parts:
            missing |= p < 0
            out = (out ^ p.astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
            out ^= out >> np.uint64(29)
    out = (out >> np.uint64(1)).astype(np.int64)
    out[missing] = MISSING
    return out


def record_hashes(records: pd.DataFrame) -> np.ndarray:
    """The content hash features() gives each record (uint64), without cleaning anything: what an
    incremental run compares with the saved hashes to find new and changed records."""
    hashed = [c for c in HASHED if c in records]
    src = pa.table({"_row": pa.array(np.arange(len(records), dtype=np.int64)),
                    **{c: _arrow_text(records[c]) for c in hashed}})
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")
        con.register("src", src)
        out = con.sql(f"select _row, hash({', '.join(hashed)}) as h from src").to_arrow_table()
    finally:
        con.close()
    h = np.empty(len(records), np.uint64)
    h[out.column("_row").to_numpy()] = out.column("h").to_numpy()
    return h
