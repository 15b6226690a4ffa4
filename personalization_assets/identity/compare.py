"""Field comparisons of candidate pairs as discrete agreement levels.

Similarities are computed with ``rapidfuzz.process.cpdist`` (element-wise, multi-threaded C)
on the distinct value pairs only, which is the vectorized equivalent of ``cdist`` within
blocks without materialising block matrices. Level 0 always means "a value is missing".
Edit distances that only matter up to 1 use OSA, which equals Damerau-Levenshtein there
and is several times faster; every scorer gets the lowest value that still matters as its
score_cutoff.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, DamerauLevenshtein, JaroWinkler

from personalization_assets.identity.nicknames import nickname_pairs
from personalization_assets.identity.prepare import Features

# pairs compared at once: each holds its distinct value pairs as Python strings for rapidfuzz
CHUNK = 500_000

# comparison -> labels of its levels (index = level); used for evidence and reports
LEVELS: dict[str, tuple[str, ...]] = {
    "first_name": ("null", "different", "jw>=0.8", "jw>=0.92|nickname", "exact"),
    "last_name": ("null", "different", "jw>=0.8", "jw>=0.92", "exact"),
    "birth_date": ("null", "different", "same year", "1 edit|day-month swap", "exact"),
    "street": ("null", "different", "token_sort>=0.7", "token_sort>=0.9", "exact"),
    # one comparison for postcode and city: they move together, two would count one fact twice
    "postcode_city": ("null", "different", "city jw>=0.88", "postcode 1 edit", "postcode exact"),
    "email": ("null", "different", "exact"),
    "phone": ("null", "different", "1 edit", "exact"),
    "national_id": ("null", "different", "2 edits", "1 edit", "exact"),
}


NAMES = {"first_name": "fn", "last_name": "ln"}
_COLUMN = {"birth_date": "birth", "postcode_city": "postcode", "street": "street"}


class _Column:
    """A categorical feature column: pairs are compared as distinct value pairs."""

    def __init__(self, codes: np.ndarray, values: pa.Array):
        self.codes, self.values = codes, values
        self._python: np.ndarray | None = None

    def strings(self, idx: np.ndarray) -> np.ndarray:
        """The values at ``idx`` as Python strings. The distinct values are converted once per
        run, not once per chunk and scorer (~5 s CPU of a 1M run went on repeated conversion)."""
        if self._python is None:
            self._python = np.array(self.values.to_pylist(), dtype=object)
        return self._python[idx]

    def score(self, a: np.ndarray, b: np.ndarray, scorer, other: "_Column | None" = None,
              same: float | None = None, where: np.ndarray | None = None, cutoff=None) -> np.ndarray:
        """Scorer value per pair, NaN where a value is missing (or outside ``where``).
        ``same`` is the scorer's value for identical strings, which then skip the scorer;
        ``cutoff`` is passed on as the scorer's score_cutoff (callers only use values past it)."""
        other = other or self
        ca, cb = self.codes[a], other.codes[b]
        ok = (ca >= 0) & (cb >= 0)
        if where is not None:
            ok &= where
        out = np.full(a.size, np.nan, np.float32)
        if same is not None and other is self:
            eq = ok & (ca == cb)
            out[eq] = same
            ok &= ~eq
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return out
        width = len(other.values) + 1
        inv, uniq = pd.factorize(ca[idx].astype(np.int64) * width + cb[idx])  # hashing, no sort
        sims = process.cpdist(self.strings(uniq // width), other.strings(uniq % width),
                              scorer=scorer, score_cutoff=cutoff, workers=-1)
        out[idx] = np.asarray(sims, np.float32)[inv]
        return out

    def null(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (self.codes[a] < 0) | (self.codes[b] < 0)

    def equal(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (self.codes[a] == self.codes[b]) & (self.codes[a] >= 0)


def _levels(null: np.ndarray, cuts: list[np.ndarray]) -> np.ndarray:
    """Level = 2 + index of the highest satisfied condition, 1 if none, 0 where null."""
    lv = np.ones(null.size, np.uint8)
    for i, cond in enumerate(cuts):
        lv[cond] = i + 2
    lv[null] = 0
    return lv


class Comparator:
    """Holds the coded columns of one set of features; turns (left, right) pairs into levels."""

    def __init__(self, f: Features):
        cols = ["fn", "ln", "birth", "street", "street_sorted", "city", "postcode", "email", "phone",
                "national_id"]
        self.c = {k: _Column(f.codes[k], f.values[k]) for k in cols}
        self.fields = [k for k in LEVELS if self._present(k)]
        self._nick = self._nickname_codes()
        self._ymd = self._birth_parts()

    def _birth_parts(self) -> tuple[np.ndarray, ...]:
        """Year, MMDD and DDMM of each record's birth date (-1 if missing), from the distinct dates."""
        col = self.c["birth"]
        cut = lambda a, b: pc.utf8_slice_codeunits(col.values, a, b)  # noqa: E731  (Arrow: no str per date)

        def num(s: pa.Array) -> np.ndarray:
            x = pd.to_numeric(s.to_numpy(zero_copy_only=False), errors="coerce")
            return np.where(np.isnan(x), -1, x).astype(np.int64)
        parts = (num(cut(0, 4)), num(cut(4, 8)), num(pc.binary_join_element_wise(cut(6, 8), cut(4, 6), "")))
        return tuple(np.where(col.codes >= 0, p[np.maximum(col.codes, 0)], -1) if p.size
                     else np.full(col.codes.size, -1) for p in parts)

    def _nickname_codes(self) -> np.ndarray:
        """Known nickname pairs as sorted codes of the first-name column, for np.isin."""
        pos = {v: i for i, v in enumerate(self.c["fn"].values.to_pylist())}
        k = len(self.c["fn"].values) + 1
        codes = [min(pos[a], pos[b]) * k + max(pos[a], pos[b])
                 for a, b in nickname_pairs() if a in pos and b in pos]
        return np.unique(np.array(codes, dtype=np.int64))

    def _present(self, field: str) -> bool:
        col = {**NAMES, **_COLUMN}.get(field, field)
        if field == "postcode_city":
            return bool((self.c["postcode"].codes >= 0).any() or (self.c["city"].codes >= 0).any())
        return bool((self.c[col].codes >= 0).any())

    @property
    def groups(self) -> list[tuple[str, ...]]:
        """Fields in scoring order, cheap or decisive ones first; names are scored together
        (swap detection needs both)."""
        names = tuple(x for x in NAMES if x in self.fields)
        order = [("email",), ("birth_date",), names, ("postcode_city",), ("national_id",), ("phone",), ("street",)]
        return [g for g in order if g and g[0] in self.fields]

    def levels(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        parts = [self._levels_chunk(a[i:i + CHUNK], b[i:i + CHUNK]) for i in range(0, a.size, CHUNK)]
        return np.vstack(parts) if parts else np.empty((0, len(self.fields)), np.uint8)

    def _levels_chunk(self, a, b) -> np.ndarray:
        out = np.zeros((a.size, len(self.fields)), np.uint8)
        for group in self.groups:
            for field, lv in zip(group, self.score(group, a, b)):
                out[:, self.fields.index(field)] = lv
        return out

    def score(self, group: tuple[str, ...], a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        """Levels of the fields of one group (see ``groups``) for the pairs (a, b)."""
        if group[0] in NAMES:
            first, last = self._names(a, b)
            return [first if field == "first_name" else last for field in group]
        return [getattr(self, "_" + group[0])(a, b, self.c)]

    def best_weight(self, field: str, a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """An upper bound of the field's weight per pair, from what is free to know: whether a
        value is missing (level 0), and for single-value fields whether the values are equal
        (only equal values reach the top level, and always do)."""
        if field in NAMES:
            out = np.full(a.size, weights[1:].max(), np.float32)
            out[self.c[NAMES[field]].null(a, b)] = 0.0
            return out
        col = self.c[_COLUMN.get(field, field)]
        out = np.where(col.equal(a, b), weights[-1], weights[1:-1].max()).astype(np.float32)
        null = col.null(a, b) & self.c["city"].null(a, b) if field == "postcode_city" else col.null(a, b)
        out[null] = 0.0
        return out

    def _names(self, a, b):
        """Levels of first and last name, compared crossed when the names look swapped."""
        c, jw = self.c, JaroWinkler.normalized_similarity
        ff, ll = c["fn"].score(a, b, jw, same=1.0), c["ln"].score(a, b, jw, same=1.0)
        maybe = ~((ff >= 0.9) & (ll >= 0.9))  # crossed scores only matter when names disagree
        fl = c["fn"].score(a, b, jw, c["ln"], where=maybe, cutoff=0.9)  # only >= 0.9 is used
        lf = c["ln"].score(a, b, jw, c["fn"], where=maybe & (fl >= 0.9), cutoff=0.9)
        straight = np.nan_to_num(ff) + np.nan_to_num(ll)
        swapped = (np.nan_to_num(fl) + np.nan_to_num(lf) > straight + 0.2) & (fl >= 0.9) & (lf >= 0.9)
        fs, ls = np.where(swapped, fl, ff), np.where(swapped, lf, ll)
        ca, cb = c["fn"].codes[a].astype(np.int64), c["fn"].codes[b].astype(np.int64)
        k = len(c["fn"].values) + 1
        nick = np.isin(np.minimum(ca, cb) * k + np.maximum(ca, cb), self._nick) & (ca >= 0) & (cb >= 0) & ~swapped
        return (_levels(np.isnan(fs), [fs >= 0.8, (fs >= 0.92) | nick, fs >= 1.0]),
                _levels(np.isnan(ls), [ls >= 0.8, ls >= 0.92, ls >= 1.0]))

    def _birth_date(self, a, b, c):
        d = c["birth"].score(a, b, OSA.distance, same=0.0, cutoff=1)
        y, md, dm = self._ymd
        year = (y[a] == y[b]) & (y[a] >= 0)
        swap = year & (md[a] == dm[b]) & (md[a] >= 0)
        return _levels(np.isnan(d), [year | (d <= 1), (d <= 1) | swap, d == 0])

    def _street(self, a, b, c):
        # token_sort_ratio is ratio() of the token-sorted strings, which are precomputed
        s = c["street_sorted"].score(a, b, fuzz.ratio, same=100.0, cutoff=70) / 100
        return _levels(np.isnan(s), [s >= 0.7, s >= 0.9, c["street"].equal(a, b)])

    def _postcode_city(self, a, b, c):
        d = c["postcode"].score(a, b, OSA.distance, same=0.0, cutoff=1)
        city = c["city"].score(a, b, JaroWinkler.normalized_similarity, same=1.0, cutoff=0.88)
        null = np.isnan(d) & np.isnan(city)
        return _levels(null, [city >= 0.88, d <= 1, d == 0])

    def _email(self, a, b, c):
        # no fuzzy level: local parts are built from names, so their similarity repeats
        # the name evidence instead of adding to it
        return _levels(c["email"].null(a, b), [c["email"].equal(a, b)])

    def _phone(self, a, b, c):
        d = c["phone"].score(a, b, OSA.distance, same=0.0, cutoff=1)
        return _levels(np.isnan(d), [d <= 1, d == 0])

    def _national_id(self, a, b, c):
        d = c["national_id"].score(a, b, DamerauLevenshtein.distance, same=0.0, cutoff=2)
        return _levels(np.isnan(d), [d <= 2, d <= 1, d == 0])
