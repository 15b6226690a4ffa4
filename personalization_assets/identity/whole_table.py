"""The stable hashes of every record of an incremental run, queried in DuckDB.

An incremental run asks the whole table a few questions: which records share a block, a key or
a value with the changed ones, and how big those groups are; which key values are held by too
many records. The saved hash columns (memory-mapped or Arrow, read in place) of the records that
did not change and the hashes of the fresh records answer them together, in one DuckDB database:
one scan per question, no million-row pandas temporaries.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa


BUCKETS = (1 << 20) - 1  # hash buckets (a mask) for counting crowded values


class WholeTable:
    """``saved``: the saved hash columns (one row per previous record) with ``pos_of_row`` (its
    position in this run, -1 = gone) and ``valid`` (still here and unchanged); ``fresh``: the
    same columns of the new or changed records at positions ``fresh_pos``."""

    def __init__(self, saved: dict[str, np.ndarray], pos_of_row: np.ndarray, valid: np.ndarray,
                 fresh: dict[str, np.ndarray], fresh_pos: np.ndarray):
        self.con = duckdb.connect()
        self.con.execute("set enable_progress_bar = false")
        names = list(saved)
        self.con.register("saved_", pa.table({**{k: pa.array(v, pa.int64()) for k, v in saved.items()}, "pos": pa.array(pos_of_row, pa.int64()),
                                              "valid": pa.array(valid)}))
        self.con.register("fresh_", pa.table({**{k: pa.array(fresh[k], pa.int64()) for k in names},
                                              "pos": pa.array(fresh_pos, pa.int64())}))
        self.saved, self.pos_of_row, self.valid, self.fresh, self.fresh_pos = saved, pos_of_row, valid, fresh, fresh_pos
        cols = ", ".join(f'"{k}"' for k in names)
        self.con.execute(f"create temp view allrows as select pos, {cols} from saved_ where valid "
                         f"union all select pos, {cols} from fresh_")

    def close(self) -> None:
        """Close the database and let go of the columns (they are a run's largest arrays)."""
        self.con.close()
        self.saved = self.pos_of_row = self.valid = self.fresh = self.fresh_pos = None

    def _values(self, values: np.ndarray) -> None:
        self.con.register("values_", pa.table({"v": pa.array(np.asarray(values, np.int64))}))

    def members(self, name: str, values: np.ndarray, max_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions of every record whose ``name`` is one of ``values`` (only of the values held by
        at most ``max_size`` records), and their values."""
        if not len(values):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        self._values(values)
        small = "" if max_size is None else \
            f"where v in (select v from m group by v having count(*) <= {int(max_size)})"
        out = self.con.sql(f"""with m as (select pos, "{name}" as v from allrows
                                           where "{name}" in (select v from values_))
                               select pos, v from m {small}""").to_arrow_table()
        return out.column("pos").to_numpy(), out.column("v").to_numpy()

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
        total = self.con.sql(f'select count(*) from allrows where "{name}" >= 0').fetchall()[0][0]
        if not len(values):
            return np.zeros(0, np.int64), int(total)
        self._values(values)
        out = self.con.sql(f"""select v, count(a.pos) as c from values_ left join allrows a on a."{name}" = v
                               group by v""").to_arrow_table()
        got = pd.Series(out.column("c").to_numpy(), index=out.column("v").to_numpy())
        return got.reindex(np.asarray(values, np.int64), fill_value=0).to_numpy(np.int64), int(total)
