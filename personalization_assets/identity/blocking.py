"""Candidate pairs from several blocking keys.

Each key is cheap and misses some true pairs; their union rarely does. Pairs are generated
with numpy (sort by key, expand every block), never by looping over records. Oversized
blocks are skipped for that key only, so a placeholder value cannot explode the pair count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _cat(*parts: pd.Series) -> pd.Series:
    out = parts[0].astype("string")
    for p in parts[1:]:
        out = out + "|" + p.astype("string")
    return out  # null if any part is null


def blocking_keys(f: pd.DataFrame) -> dict[str, pd.Series]:
    """Named key columns; a null key puts the record in no block for that key."""
    year = f["birth"].str[:4]
    both = f["fn_canon"].notna() & f["ln"].notna()
    fn, ln = f["fn_canon"].fillna(""), f["ln"].fillna("")
    lo, hi = fn.where(fn <= ln, ln), ln.where(fn <= ln, fn)
    fs, ls = f["fn_sdx"].fillna(""), f["ln_sdx"].fillna("")
    slo, shi = fs.where(fs <= ls, ls), ls.where(fs <= ls, fs)
    number = f["street"].str.extract(r"(\d+)", expand=False)
    return {
        "surname_sound_birth_year": _cat(f["ln_sdx"], year),
        "postcode_first_initial": _cat(f["postcode"], f["fn"].str[:1]),
        "email_local": f["email_local"].where(f["email_local"].str.len() >= 3),
        "names_any_order": _cat(lo, hi).where(both),
        "birth_date_first_initial": _cat(f["birth"], f["fn"].str[:1]),
        "birth_date_surname_initial": _cat(f["birth"], f["ln"].str[:1]),
        "national_id": f["national_id"],
        "phone_tail": f["phone"].str[-8:],
        "name_sounds_any_order": _cat(slo, shi).where(both),
        "street_postcode": _cat(f["street"], f["postcode"]),
        "postcode_street_number": _cat(f["postcode"], number),
        "birth_date_postcode": _cat(f["birth"], f["postcode"]),
    }


def pairs_within_groups(codes: np.ndarray, max_block: int) -> tuple[np.ndarray, np.ndarray, int]:
    """All (i, j), i < j, of rows sharing a non-negative code; skips blocks over max_block.

    Returns left, right (int64 row positions) and the number of records in skipped blocks.
    """
    rows = np.flatnonzero(codes >= 0)
    if rows.size < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), 0
    order = rows[np.argsort(codes[rows], kind="stable")]
    sc = codes[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    sizes = np.diff(np.r_[starts, sc.size])
    big = sizes > max_block
    skipped = int(sizes[big].sum())
    keep = (sizes > 1) & ~big
    starts, sizes = starts[keep], sizes[keep]
    if starts.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), skipped
    # position of every member inside its block, then expand each member to its later partners
    member = np.repeat(starts, sizes) + _ranges(sizes)
    block_end = np.repeat(starts + sizes, sizes)
    partners = block_end - member - 1
    left_pos = np.repeat(member, partners)
    right_pos = left_pos + 1 + _ranges(partners)
    a, b = order[left_pos], order[right_pos]
    return np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64), skipped


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """Concatenated arange(n) for every n in lengths."""
    starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)


def candidate_pairs(f: pd.DataFrame, max_block: int, only_rows: np.ndarray | None = None):
    """Union of pairs over all blocking keys as (left, right) arrays plus per-key statistics.

    With ``only_rows`` (incremental runs) a pair is kept only if one side is in that set.
    """
    n = len(f)
    mask = None
    if only_rows is not None:
        mask = np.zeros(n, bool)
        mask[only_rows] = True
    encoded, stats = [], {}
    for name, key in blocking_keys(f).items():
        codes = pd.factorize(key, use_na_sentinel=True)[0]
        if mask is not None:  # restrict blocks to those touched by new rows
            touched = np.unique(codes[mask & (codes >= 0)])
            codes = np.where(np.isin(codes, touched), codes, -1)
        a, b, skipped = pairs_within_groups(codes, max_block)
        if mask is not None:
            keep = mask[a] | mask[b]
            a, b = a[keep], b[keep]
        stats[name] = {"pairs": int(a.size), "records_in_skipped_blocks": skipped}
        encoded.append(a * n + b)
    allp = np.unique(np.concatenate(encoded)) if encoded else np.empty(0, np.int64)
    return allp // n, allp % n, stats
