"""Candidate pairs from several blocking keys.

Each key is cheap and misses some true pairs; their union rarely does. Pairs are generated
with numpy (sort by key, expand every block), never by looping over records. Oversized
blocks are skipped for that key only, so a placeholder value cannot explode the pair count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from personalization_assets.identity.prepare import Features, mix, on_values, value_hashes


def codes(f: Features, col: str) -> np.ndarray:
    """int64 codes of a feature column, -1 for missing."""
    return f.codes[col].astype(np.int64)


def combine(*parts: np.ndarray) -> np.ndarray:
    """One integer code per distinct tuple of codes; -1 if any part is missing."""
    out = parts[0].astype(np.int64)
    for c in parts[1:]:
        out = out * (int(c.max(initial=0)) + 1) + c
    missing = np.zeros(out.size, bool)
    for c in parts:
        missing |= c < 0
    out[missing] = -1
    return out


def _any_order(f: Features, x: str, y: str) -> np.ndarray:
    """Key of an unordered pair of values (catches swapped first and last names): both columns'
    codes are mapped into one shared dictionary of their distinct values first."""
    vx, vy = f.values[x].to_pylist(), f.values[y].to_pylist()
    shared = pd.factorize(np.array(vx + vy, dtype=object))[0]
    to_shared = lambda c, table: np.where(c >= 0, table[np.maximum(c, 0)], -1) if table.size else c  # noqa: E731
    a, b = to_shared(codes(f, x), shared[:len(vx)]), to_shared(codes(f, y), shared[len(vx):])
    return combine(np.minimum(a, b), np.maximum(a, b))


# blocking key -> the feature columns it combines; ("any_order", x, y) is an unordered pair of
# values (catches swapped first and last names), ("digits",) the national id's sorted digits
KEYS: dict[str, tuple] = {
    "surname_sound_birth_month": ("ln_sdx", "birth_ym"),
    "postcode_surname_sound": ("postcode", "ln_sdx"),
    "email_local": ("email_block",),
    "names_any_order": ("any_order", "fn", "ln"),
    "nickname_surname": ("fn_canon", "ln_sdx"),
    "birth_date_first_initial": ("birth", "fn_init"),
    "birth_date_surname_initial": ("birth", "ln_init"),
    "national_id": ("national_id",),
    "phone_tail": ("phone_tail",),
    "name_sounds_any_order": ("any_order", "fn_sdx", "ln_sdx"),
    "street_postcode": ("street", "postcode"),
    "postcode_street_number": ("postcode", "street_number"),
    "birth_date_postcode": ("birth", "postcode"),
    # a surname typo can change its sound (george/geogre; its initial stays) and a second typo
    # sits elsewhere
    "first_name_postcode": ("fn_canon", "postcode", "ln_init"),
    "national_id_digits": ("digits",),
}


def blocking_keys(f: Features) -> dict[str, np.ndarray]:
    """Named integer key columns (run-local codes); -1 puts the record in no block for that key."""
    out = {}
    for name, spec in KEYS.items():
        if spec[0] == "any_order":
            out[name] = _any_order(f, spec[1], spec[2])
        elif spec[0] == "digits":
            out[name] = _sorted_digits(f)
        else:
            out[name] = combine(*(codes(f, c) for c in spec))
    return out


def key_hashes(f: Features, vh: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The blocking keys as stable int64 hashes (MISSING = -1 puts a record in no block): the same
    blocks as blocking_keys(), comparable across runs, so a run can save them and the next one
    find the saved records that share a block with a new record. ``vh`` caches value_hashes per column."""
    vh = {} if vh is None else vh

    def h(col):
        if col not in vh:
            vh[col] = value_hashes(f.codes[col], f.values[col])
        return vh[col]
    out = {}
    for name, spec in KEYS.items():
        if spec[0] == "any_order":
            x, y = h(spec[1]), h(spec[2])
            out[name] = mix(np.minimum(x, y), np.maximum(x, y))
        elif spec[0] == "digits":
            out[name] = value_hashes(*on_values(f.codes["national_id"], f.values["national_id"], _digits))
        else:
            out[name] = mix(*(h(c) for c in spec))
    return out


def _sorted_digits(f: Features) -> np.ndarray:
    """The national id's first three characters, then the rest in sorted order: a transposition
    typo past the prefix keeps the key, and the prefix keeps blocks small (sorted digits alone
    take ~11k values for 7 digits, blocks of ~90 records at a million)."""
    return on_values(f.codes["national_id"], f.values["national_id"], _digits)[0].astype(np.int64)


def _digits(v: str) -> str:
    return v[:3] + "".join(sorted(v[3:]))


def pairs_within_groups(codes: np.ndarray, max_block: int, window: int | None = None,
                        order_key: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """All (i, j), i < j, of rows sharing a non-negative code; skips blocks over max_block.

    With ``window``, a block larger than window + 1 is compared as a sorted neighbourhood:
    each record only with the next ``window`` records in ``order_key`` order, which bounds
    the pairs of popular values (a big city, a common surname) to n * window.
    Returns left, right (int64 row positions) and the number of records in skipped blocks.
    """
    rows = np.flatnonzero(codes >= 0)
    if rows.size < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), 0
    secondary = order_key[rows] if order_key is not None else rows
    if int(codes.max()) < np.iinfo(np.int64).max // (codes.size + 1):  # one int64 sort key
        order = rows[np.argsort(codes[rows] * (codes.size + 1) + secondary)]
    else:
        order = rows[np.lexsort((secondary, codes[rows]))]
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
    if window is not None:
        partners = np.minimum(partners, window)
    left_pos = np.repeat(member, partners)
    right_pos = left_pos + 1 + _ranges(partners)
    a, b = order[left_pos], order[right_pos]
    return np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64), skipped


def sample_pairs_within_groups(codes: np.ndarray, max_block: int, n_pairs: int,
                               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Like pairs_within_groups, but when there are more than ``n_pairs`` pairs, a uniform
    sample of them (with replacement) drawn without ever materialising all pairs."""
    rows = np.flatnonzero(codes >= 0)
    order = rows[np.argsort(codes[rows], kind="stable")]
    sc = codes[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]]) if sc.size else np.empty(0, np.int64)
    sizes = np.diff(np.r_[starts, sc.size])
    keep = (sizes > 1) & (sizes <= max_block)
    starts, sizes = starts[keep], sizes[keep]
    block_pairs = sizes * (sizes - 1) / 2
    if block_pairs.sum() <= n_pairs:
        a, b, _ = pairs_within_groups(codes, max_block)
        return a, b
    block = rng.choice(starts.size, n_pairs, p=block_pairs / block_pairs.sum())
    i = rng.integers(0, sizes[block])
    j = rng.integers(0, sizes[block] - 1)
    j += j >= i  # a second, different member of the same block
    a, b = order[starts[block] + i], order[starts[block] + j]
    return np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)


def sorted_unique(x: np.ndarray, in_place: bool = False) -> np.ndarray:
    """np.unique by sorting: numpy 2.4's hash-based unique takes ~20x longer on 10M+ int64.
    ``in_place`` sorts ``x`` itself instead of a copy (for the largest arrays of a run)."""
    if in_place:
        x.sort()
    else:
        x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if x.size else x


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """Concatenated arange(n) for every n in lengths."""
    starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)


def window_members(block: np.ndarray, order: np.ndarray, dirty: np.ndarray, window: int) -> np.ndarray:
    """Which members (one per row: its ``block``) sit at most ``window`` places from a ``dirty``
    member of their block, in ``order`` (the rows sorted by block, then as pairs_within_groups
    orders a block). Pairs_within_groups pairs a dirty record with the same partners among these
    members alone as among its whole block: every member between a dirty record and a partner
    is kept, so no distance shrinks past ``window``."""
    b, d = block[order], dirty[order]
    at = np.arange(order.size)
    last = np.maximum.accumulate(np.where(d, at, -1))  # the nearest dirty member at or before
    nxt = np.minimum.accumulate(np.where(d, at, order.size)[::-1])[::-1]  # ... at or after
    near = (last >= 0) & (at - last <= window)
    near[near] &= b[last[near]] == b[near]
    after = (nxt < order.size) & (nxt - at <= window)
    after[after] &= b[nxt[after]] == b[after]
    keep = np.zeros(order.size, bool)
    keep[order] = near | after
    return keep


def _sort_rank(f: Features) -> np.ndarray:
    """Alphabetical rank of (surname, first name, birth date): the neighbourhood order in big blocks."""
    parts = []
    for col in ("birth", "fn", "ln"):  # lexsort: last key is primary
        rank = np.empty(len(f.values[col]), np.int64)
        rank[pc.array_sort_indices(f.values[col]).to_numpy()] = np.arange(rank.size)
        c = codes(f, col)
        parts.append(np.where(c >= 0, rank[np.maximum(c, 0)] if rank.size else 0, -1))
    return np.argsort(np.lexsort(parts)).astype(np.int64)


def candidate_pairs(f: Features, max_block: int, only_rows: np.ndarray | None = None,
                    window: int | None = None, keys: dict[str, np.ndarray] | None = None,
                    restricted: bool = False):
    """Union of pairs over all blocking keys as (left, right) int32 arrays, sorted, plus
    per-key statistics.

    With ``only_rows`` (incremental runs) a pair is kept only if one side is in that set.
    ``keys`` replaces blocking_keys(f) (an incremental run passes the blocks of the whole table);
    ``restricted``: they hold -1 outside the blocks of ``only_rows`` already (an incremental plan's).
    """
    n = len(f)
    mask = None
    if only_rows is not None:
        mask = np.zeros(n, bool)
        mask[only_rows] = True
    encoded, stats = [], {}
    order_key = _sort_rank(f)
    for name, codes in (keys if keys is not None else blocking_keys(f)).items():
        if mask is not None and not restricted:  # restrict blocks to those touched by new rows
            touched = np.unique(codes[mask & (codes >= 0)])
            codes = np.where(pd.Series(codes).isin(touched).to_numpy(), codes, -1)  # hashed: np.isin sorts
        a, b, skipped = pairs_within_groups(codes, max_block, window, order_key)
        if mask is not None:
            keep = mask[a] | mask[b]
            a, b = a[keep], b[keep]
        stats[name] = {"pairs": int(a.size), "records_in_skipped_blocks": skipped}
        encoded.append(a * n + b)
    allp = np.concatenate(encoded) if encoded else np.empty(0, np.int64)
    del encoded
    allp = sorted_unique(allp, in_place=True)  # the union of all keys' pairs: a run's largest array
    return (allp // n).astype(np.int32), (allp % n).astype(np.int32), stats
