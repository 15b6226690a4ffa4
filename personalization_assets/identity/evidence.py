"""The match weight of a pair beyond plain Fellegi-Sunter, and the conflicts that veto a link.

Fellegi-Sunter adds field weights as if fields were independent and every value were equally
rare. Real customer tables break both assumptions, and each break merges two people:
- **Term frequency** (Splink's TF adjustment): agreeing on ``smith``, a family mailbox or an
  office switchboard is weaker evidence than agreeing on a rare value. The exact-level weight
  uses the value's own frequency, ``log2(m / tf)``, instead of the average ``log2(m / u)``;
  only downwards, so a rare value never counts for more than the model says.
- **Households**: surname, street and postcode agree together for every member of a family, so
  they are one piece of evidence. The positive weights of these fields count as their largest
  one (plus ``household_extra`` of the rest), their negative weights all count.
- **Conflicts**: two records whose first names differ (not a nickname, not a typo), whose
  birth dates differ (not a typo or a day/month swap) or whose generational suffixes differ
  (Jr on one side only) are two people, whatever they share;
  only a personal id (national id) equal up to one typo excuses one such field, never both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from rapidfuzz.distance import OSA

from personalization_assets.identity.compare import Comparator
from personalization_assets.identity.fellegi_sunter import FSModel

TF_COLUMNS = {"first_name": "fn", "last_name": "ln", "email": "email", "phone": "phone", "street": "street"}
HOUSEHOLD_FIELDS = ("last_name", "street", "postcode_city")
CONFLICT_FIELDS = ("first_name", "birth_date")
PERSONAL_ID = "national_id"
PERSONAL_ID_LEVEL = 3  # exact or one edit (a typo): a random person's id is almost never this close
# Highest level that still means "another person": first names below jw 0.92 that are neither a
# nickname nor one typo apart (jeanne/joann); birth dates more than a typo or a swap apart.
CONFLICT_LEVEL = {"first_name": 2, "birth_date": 1}


@dataclass
class Assessment:
    levels: np.ndarray        # (pairs, fields) agreement levels
    weight: np.ndarray        # final match weight (prior included)
    prob: np.ndarray          # posterior match probability from ``weight``
    conflict: np.ndarray      # bool: the records cannot be one person
    n_conflicts: np.ndarray   # how many fields disagree (first name, birth date, Jr/Sr)
    tf_adjustment: np.ndarray
    household_adjustment: np.ndarray


def household_adjustment(w: np.ndarray, col: dict[str, int], extra: float) -> np.ndarray:
    """Per pair (rows of field weights ``w``), what the household fields' positive weights lose
    by counting as their largest one (plus ``extra`` of the rest)."""
    ks = [col[f] for f in HOUSEHOLD_FIELDS if f in col]
    if len(ks) < 2:
        return np.zeros(w.shape[0], np.float32)
    pos = np.clip(w[:, ks], 0, None)
    return ((pos.max(axis=1) - pos.sum(axis=1)) * (1 - extra)).astype(np.float32)


class PairScorer:
    """Scores pairs of one set of features with one fitted model."""

    def __init__(self, comp: Comparator, model: FSModel, household_extra: float, generation: np.ndarray,
                 tf_counts: dict[str, tuple[np.ndarray, int]] | None = None):
        """``tf_counts``: per TF column, records holding each value (by code) and records holding
        any, counted over a larger table than ``comp``'s (an incremental run's whole table)."""
        self.comp, self.model, self.household_extra = comp, model, household_extra
        self.generation = generation  # code of Jr/Sr/III (-1 = none): a different one is another person
        self.col = {f: k for k, f in enumerate(comp.fields)}
        self.outvoted = self._outvoted()
        self.tf_penalty = {}
        for field, column in TF_COLUMNS.items():
            if field not in self.col:
                continue
            codes = comp.c[column].codes
            present = codes[codes >= 0]
            counts, total = tf_counts[column] if tf_counts is not None else (np.bincount(present), present.size)
            if total == 0:
                continue
            tf = counts / total
            # a value held by one person with one duplicate is what "exact" means on average
            u_ref = max(float(model.u[self.col[field]][-1]), 2.0 / total)
            self.tf_penalty[field] = np.minimum(0.0, np.log2(u_ref / np.maximum(tf, 1e-12))).astype(np.float32)

    def assess(self, a: np.ndarray, b: np.ndarray, levels: np.ndarray | None = None) -> Assessment:
        if levels is None:
            levels = self.comp.levels(a, b)
        w = self.model.field_weights(levels).astype(np.float32)
        tf = np.zeros(a.size, np.float32)
        for field, penalty in self.tf_penalty.items():
            k, codes = self.col[field], self.comp.c[TF_COLUMNS[field]].codes
            top = len(self.model.m[k]) - 1  # the exact-agreement level
            same = (levels[:, k] == top) & (codes[a] == codes[b]) & (codes[a] >= 0)
            adj = np.where(same, penalty[np.maximum(codes[a], 0)], 0.0).astype(np.float32)
            w[:, k] += adj
            tf += adj
        hh = household_adjustment(w, self.col, self.household_extra)
        prior = np.log2(self.model.match_rate / (1 - self.model.match_rate))
        weight = prior + w.sum(axis=1) + hh
        prob = 1.0 / (1.0 + np.exp2(-weight.astype(np.float64)))
        n_conflicts = np.zeros(a.size, np.int8)
        excused = np.zeros(a.size, bool)
        for field in CONFLICT_FIELDS:
            if field in self.col:
                differ = self._differ(field, a, b, levels[:, self.col[field]])
                n_conflicts += differ
                excused |= differ & (self.outvoted[field][a] | self.outvoted[field][b])
        # an outvoted value excuses a pair's only conflicting field, never two of them
        n_conflicts -= (excused & (n_conflicts == 1)).astype(np.int8)
        # Jr against Sr is two people; Jr against no suffix only when the birth dates do not
        # agree exactly (the same man writes his suffix only sometimes)
        gen = self.generation
        one_sided = (gen[a] >= 0) != (gen[b] >= 0)
        k_birth = self.col.get("birth_date")
        same_birth = levels[:, k_birth] == len(self.model.m[k_birth]) - 1 if k_birth is not None \
            else np.zeros(a.size, bool)
        n_conflicts += ((gen[a] != gen[b]) & (gen[a] >= 0) & (gen[b] >= 0)) | (one_sided & ~same_birth)
        conflict = n_conflicts >= 2
        # one conflicting field may be a data-entry error when a personal id (never shared,
        # unlike a mailbox or a phone) agrees; without one, it is another person
        k = self.col.get(PERSONAL_ID)
        same_id = levels[:, k] >= PERSONAL_ID_LEVEL if k is not None else np.zeros(a.size, bool)
        conflict |= (n_conflicts == 1) & ~same_id
        return Assessment(levels, weight, prob, conflict, n_conflicts, tf, hh)

    def _differ(self, field: str, a: np.ndarray, b: np.ndarray, level: np.ndarray) -> np.ndarray:
        """Pairs whose values of a conflict field are two different values (not a typo, not missing)."""
        differ = (level <= CONFLICT_LEVEL[field]) & (level > 0)
        if field == "first_name" and differ.any():
            idx = np.flatnonzero(differ)
            differ[idx[self._same_name(a[idx], b[idx], level[idx])]] = False
        return differ

    def _outvoted(self) -> dict[str, np.ndarray]:
        """Per conflict field, the records whose value the other records of their personal id
        contradict: a national id held by three records of which two say Liam and one says Elton
        is one person with a mistyped name, so that record's name is no evidence against anyone.
        Only one field per record can be outvoted: a record contradicted on its first name AND
        its birth date is another person (or a mistyped id), and keeps both as evidence."""
        n = self.generation.size
        out = {f: np.zeros(n, bool) for f in CONFLICT_FIELDS}
        fields = [f for f in CONFLICT_FIELDS if f in self.col]
        if PERSONAL_ID not in self.col or len(fields) < 2:
            return out
        pid = self.comp.c["national_id"].codes.astype(np.int64)
        column = {"first_name": "fn", "birth_date": "birth"}
        contradicted = {}
        for field in fields:
            code = self.comp.c[column[field]].codes.astype(np.int64)
            df = pd.DataFrame({"pid": pid, "code": code, "row": np.arange(n)})
            df = df[(df["pid"] >= 0) & (df["code"] >= 0)]
            counts = df.groupby(["pid", "code"])["row"].agg(["size", "first"]).reset_index()
            counts = counts.sort_values(["pid", "size"], ascending=[True, False], kind="stable")
            runner_up = counts.groupby("pid")["size"].shift(-1).groupby(counts["pid"]).transform("first").fillna(0)
            top = ~counts["pid"].duplicated()
            # the value most records of the id hold, by at least two and more than any other
            major = counts[top & (counts["size"] >= 2) & (counts["size"] > runner_up)].set_index("pid")
            df = df[df["pid"].isin(major.index)]
            df = df[df["code"].to_numpy() != major.loc[df["pid"], "code"].to_numpy()]
            rows, reps = df["row"].to_numpy(), major.loc[df["pid"], "first"].to_numpy()
            hit = np.zeros(n, bool)
            if rows.size:
                group = ("first_name", "last_name") if field == "first_name" else (field,)
                level = self.comp.score(tuple(g for g in group if g in self.col), rows, reps)[0]
                hit[rows[self._differ(field, rows, reps, level)]] = True
            contradicted[field] = hit
        for field in fields:
            others = np.zeros(n, bool)
            for other in fields:
                if other != field:
                    others |= contradicted[other]
            out[field] = contradicted[field] & ~others
        return out

    def _same_name(self, a: np.ndarray, b: np.ndarray, level: np.ndarray) -> np.ndarray:
        """First names that are not two names after all: one typo apart (kia/kai), two typos
        apart when they are similar (jw >= 0.8: nathab/nathsan), or one record's first name is
        the other's surname up to a typo (names entered the wrong way round, which the level
        misses when a surname is missing or has a typo of its own)."""
        fn, ln = self.comp.c["fn"], self.comp.c["ln"]
        same = fn.score(a, b, OSA.distance, cutoff=2) <= np.where(level >= 2, 2, 1)
        same |= fn.score(a, b, OSA.distance, other=ln, cutoff=1) <= 1
        same |= ln.score(a, b, OSA.distance, other=fn, cutoff=1) <= 1
        return same
