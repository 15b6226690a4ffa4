"""Matching normal form computed in DuckDB: vectorized, multi-threaded string cleaning.

Python-level cleaning costs a few microseconds per distinct value, which is most of a run
at a million records; DuckDB does the same in C++ across cores. Rules: no case, no accents,
no punctuation, placeholders become NULL, non-Latin letters are kept (\\p{L}). The same
query derives the short blocking keys (initials, birth month, house number, phone tail),
the token-sorted street and a content hash of the raw record.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from personalization_assets.identity.config import (
    PLACEHOLDER_EMAIL_DOMAINS,
    PLACEHOLDER_EMAIL_LOCALS,
    PLACEHOLDER_TOKENS,
)

FAKE_PHONE_TAILS = tuple(str(d) * 7 for d in range(10)) + ("1234567", "7654321", "0123456")
TEXT_SOURCES = ("first_name", "last_name", "birth_date", "street", "city", "postcode", "email_key",
                "phone", "national_id")
# raw columns whose change makes a record "changed" for incremental runs
HASHED = ("record_id", "source", "source_id", "first_name", "last_name", "email_key", "phone", "street",
          "city", "postcode", "birth_date", "country", "national_id")
# text columns the comparator reads (categoricals); the rest are blocking/exact keys (codes only)
TEXT_OUT = ("fn", "ln", "street", "street_sorted", "city", "postcode", "national_id", "birth", "email", "phone")
CODE_OUT = ("email_block", "birth_ym", "fn_init", "ln_init", "street_number", "phone_tail", "source_key",
            "generation")
# "Smith Jr", "John Sr.", "Henry III": a generational suffix is not part of the name, and tells
# father and son apart when nothing else does
SUFFIX = r"[\s,.]+(jr|sr|junior|senior|ii|iii|iv)\.?$"


def _in(values) -> str:
    """A literal IN list of trusted constants (our own placeholder tables, never user data)."""
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values)) + ")"


def _sql(hashed: list[str]) -> str:
    # Each stage is its own projection, so every regular expression runs once per row
    # (an expression repeated inside CASE/IN would be evaluated once per mention).
    txt = "strip_accents(lower(trim({c})))"
    letters = "regexp_replace(" + txt + r", '[^\p{{L}}]+', '', 'g')"
    words = "trim(regexp_replace(" + txt + r", '[^\p{{L}}\p{{N}}]+', ' ', 'g'))"
    code = "regexp_replace(" + txt + r", '[^\p{{L}}\p{{N}}]+', '', 'g')"
    real = "case when {c} = '' or {c} in " + _in(PLACEHOLDER_TOKENS) + " then null else {c} end as {c}"
    text = ("fn", "ln", "street", "city", "postcode", "national_id")
    suffix = "regexp_extract(lower(trim({c})), '" + SUFFIX + "', 1)"
    return f"""
    with named as (
      select *, regexp_replace(first_name, '(?i)' || '{SUFFIX}', '') as first_bare,
             regexp_replace(last_name, '(?i)' || '{SUFFIX}', '') as last_bare,
             nullif(coalesce(nullif({suffix.format(c='last_name')}, ''), {suffix.format(c='first_name')}), '') as gen
      from src),
    raw as (
      select _row, {letters.format(c='first_bare')} as fn, {letters.format(c='last_bare')} as ln,
             case gen when 'junior' then 'jr' when 'senior' then 'sr' else gen end as generation,
             coalesce(strftime(try_cast(birth_date as date), '%Y%m%d'),
                      regexp_replace(birth_date, '[-/. ]', '', 'g')) as bd,
             {words.format(c='street')} as street, {words.format(c='city')} as city,
             {code.format(c='postcode')} as postcode, {code.format(c='national_id')} as national_id,
             lower(trim(email_key)) as em, regexp_replace(phone, '[^0-9]', '', 'g') as ph,
             source || '|' || source_id as source_key, hash({", ".join(hashed)}) as record_hash
      from named),
    parts as (
      select *, split_part(em, '@', 1) as em_first, regexp_extract(em, '@([^@]*)$', 1) as em_domain
      from raw),
    clean as (
      select _row, source_key, record_hash, generation, {", ".join(real.format(c=c) for c in text)},
        case when regexp_full_match(bd, '(19|20)[0-9]{{6}}') and bd <> '19000101' then bd end as birth,
        case when em_first <> '' and strpos(em, '@') > 0 and em_first not in {_in(PLACEHOLDER_EMAIL_LOCALS)}
              and em_domain not in {_in(PLACEHOLDER_EMAIL_DOMAINS)} then em end as email,
        case when length(ph) >= 7 and right(ph, 7) not in {_in(FAKE_PHONE_TAILS)} then ph end as phone
      from parts),
    derived as (
      select *, regexp_replace(left(email, length(email) - strpos(reverse(email), '@')),
                               '[^\p{{L}}\p{{N}}]+', '', 'g') as el,
             array_to_string(list_sort(string_split(street, ' ')), ' ') as street_sorted
      from clean)
    select _row, {", ".join(TEXT_OUT)}, source_key, record_hash, generation,
      case when length(el) >= 3 then el end as email_block,
      left(birth, 6) as birth_ym, left(fn, 1) as fn_init, left(ln, 1) as ln_init,
      nullif(regexp_extract(street, '\p{{Nd}}+'), '') as street_number, right(phone, 8) as phone_tail
    from derived"""


def _arrow_text(col: pd.Series) -> pa.Array:
    if pd.api.types.is_datetime64_any_dtype(col):
        col = col.dt.strftime("%Y-%m-%d")
    try:  # str/None objects convert directly; anything else goes through pandas' string dtype
        return pa.array(col, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(col.astype("string"), type=pa.string(), from_pandas=True)


def _codes(col: pa.ChunkedArray, row: np.ndarray) -> tuple[np.ndarray, pa.Array]:
    """int32 dictionary codes (-1 = null) put back in input row order, and the dictionary."""
    enc = col.combine_chunks().dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    if enc.indices.null_count:
        codes = np.where(enc.indices.is_null().to_numpy(zero_copy_only=False), -1, codes)
    out = np.empty(codes.size, np.int32)
    out[row] = codes
    return out, enc.dictionary


def clean_frame(records: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, pa.Array], np.ndarray]:
    """int32 codes (-1 = missing) of every cleaned column, the distinct values behind the codes
    of the text columns (Arrow arrays: no Python string per value) and the record hash (uint64)."""
    # Arrow strings in, so DuckDB scans in parallel instead of converting Python objects
    cols = {k: _arrow_text(records[k]) if k in records else pa.nulls(len(records), pa.string())
            for k in dict.fromkeys(TEXT_SOURCES + HASHED)}
    src = pa.table({"_row": pa.array(np.arange(len(records), dtype=np.int64)), **cols})
    hashed = [c for c in HASHED if c in records]
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")
        con.register("src", src)
        table = con.sql(_sql(hashed)).to_arrow_table()
    finally:
        con.close()
    del src, cols
    # parallel scans return rows in any order; _row puts every value back on its record
    row = table.column("_row").to_numpy()
    codes, values = {}, {}
    for name in TEXT_OUT:
        codes[name], values[name] = _codes(table.column(name), row)
    for name in CODE_OUT:  # their values are kept too: the saved state of a run holds them (prepare.py)
        codes[name], values[name] = _codes(table.column(name), row)
    record_hash = np.empty(row.size, np.uint64)
    record_hash[row] = table.column("record_hash").to_numpy()
    return codes, values, record_hash
