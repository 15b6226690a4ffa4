"""The stable hashes of every record of an incremental run, asked a few questions.

An incremental run asks the whole table a few questions: which records share a block, a key or
a value with the changed ones, and how big those groups are; which key values are held by too
many records. The saved hash columns (memory-mapped or Arrow, read in place) of the records that
did not change and the hashes of the fresh records answer them together: one screening pass over
a column per question (the values asked for are few), no join and no million-row temporaries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


BUCKETS = (1 << 20) - 1  # hash buckets (a mask) for counting crowded values and screening lookups
SCAN = 1 << 16  # records per slice of a screening pass (its temporaries stay in cache)
MAX_SCREEN = (1 << 22) - 1  # most buckets of a screening bitmap (4 MB)


def screen_mask(values: int) -> int:
    """Buckets (a mask) of the bitmap screening for ``values`` values: at least 16 per value, so
    that few records pass to the hash lookup (at a quarter of a million values, 1M buckets let
    a fifth of the records through: ~35 ms a pass, against ~21 ms with 4M)."""
    return max(BUCKETS, min(MAX_SCREEN, (1 << int(16 * values).bit_length()) - 1))


class WholeTable:
    """``saved``: the saved hash columns (one row per previous record) with ``pos_of_row`` (its
    position in this run, -1 = gone) and ``valid`` (still here and unchanged); ``fresh``: the
    same columns of the new or changed records at positions ``fresh_pos``."""

    def __init__(self, saved: dict[str, np.ndarray], pos_of_row: np.ndarray, valid: np.ndarray,
                 fresh: dict[str, np.ndarray], fresh_pos: np.ndarray):
        self.saved, self.pos_of_row, self.valid, self.fresh, self.fresh_pos = saved, pos_of_row, valid, fresh, fresh_pos

    def close(self) -> None:
        """Let go of the columns (they are a run's largest arrays)."""
        self.saved = self.pos_of_row = self.valid = self.fresh = self.fresh_pos = None

    def _hits(self, name: str, values: np.ndarray, positions: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Positions of every record (saved and still valid, or fresh) whose ``name`` is one of
        ``values`` (distinct, not missing), and which of them (its index in ``values``); without
        ``positions``, only how many records hold each value. A bitmap of the values' hash buckets
        rules out most records (~5x faster than a hash probe per record); only the records left are
        looked up. Each slice of SCAN records is done whole, so no temporary spans the table."""
        values = np.asarray(values, np.int64)
        table = pd.Index(values)  # a hash table of the values asked for
        mask = screen_mask(values.size)
        bucket = np.zeros(mask + 1, bool)
        bucket[values & mask] = True
        pos, which, counts = [], [], np.zeros(values.size, np.int64)
        for col, at, keep in ((self.saved[name], self.pos_of_row, self.valid), (self.fresh[name], self.fresh_pos, None)):
            for s in range(0, col.size, SCAN):
                part = col[s:s + SCAN]
                maybe = np.flatnonzero(bucket[part & mask])
                if keep is not None:
                    maybe = maybe[keep[s:s + SCAN][maybe]]
                code = table.get_indexer(part[maybe])
                hit = code >= 0
                if positions:
                    pos.append(at[s + maybe[hit]])
                    which.append(code[hit])
                else:
                    counts += np.bincount(code[hit], minlength=values.size)
        if not positions:
            return np.empty(0, np.int64), counts
        return (np.concatenate(pos).astype(np.int64) if pos else np.empty(0, np.int64),
                np.concatenate(which).astype(np.int64) if which else np.empty(0, np.int64))

    def members(self, name: str, values: np.ndarray, max_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions of every record whose ``name`` is one of ``values`` (only of the values held by
        at most ``max_size`` records), and their values."""
        values = pd.unique(np.asarray(values, np.int64))
        values = values[values >= 0]
        if not len(values):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        pos, which = self._hits(name, values)
        if max_size is not None:
            small = np.bincount(which, minlength=values.size)[which] <= max_size
            pos, which = pos[small], which[small]
        return pos, values[which]

    def crowded(self, name: str, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Values of ``name`` (missing apart) held by more than ``limit`` records: the values, their
        counts and their first position, in order of that position. Values are first counted per
        bucket of their hash (a bincount): only the records of buckets over the limit are grouped."""
        parts = []
        for col, pos, keep in ((self.saved[name], self.pos_of_row, self.valid),
                               (self.fresh[name], self.fresh_pos, None)):
            ok = col >= 0 if keep is None else keep & (col >= 0)
            parts.append((col[ok], pos[ok]))
        buckets = [(v & BUCKETS).astype(np.intp) for v, _ in parts]
        per_bucket = sum(np.bincount(b, minlength=BUCKETS + 1) for b in buckets)
        crowded = per_bucket > limit
        vals = np.concatenate([v[crowded[b]] for (v, _), b in zip(parts, buckets)])
        pos = np.concatenate([p[crowded[b]] for (_, p), b in zip(parts, buckets)])
        g = pd.DataFrame({"v": vals, "pos": pos}).groupby("v")["pos"].agg(["size", "min"])
        g = g[g["size"] > limit].sort_values("min")
        return g.index.to_numpy(np.int64), g["size"].to_numpy(np.int64), g["min"].to_numpy(np.int64)

    def counts(self, name: str, values: np.ndarray) -> tuple[np.ndarray, int]:
        """How many records hold each of ``values`` (distinct), and how many hold any value."""
        saved, fresh = self.saved[name], self.fresh[name]
        total = int(np.count_nonzero(self.valid & (saved >= 0))) + int(np.count_nonzero(fresh >= 0))
        values = np.asarray(values, np.int64)
        out = np.zeros(values.size, np.int64)
        asked = np.flatnonzero(values >= 0)
        if asked.size:
            out[asked] = self._hits(name, values[asked], positions=False)[1]
        return out, total
