"""What one resolution run returns and what the next run needs from it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from personalization_assets.identity.fellegi_sunter import FSModel


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

    @classmethod
    def from_tables(cls, crosswalk: pd.DataFrame | None, evidence: pd.DataFrame | None,
                    golden: pd.DataFrame | None = None) -> "ResolvedState | None":
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
        return cls(crosswalk, evidence, model, golden)

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

    def state(self) -> ResolvedState:
        return ResolvedState(self.crosswalk, self.evidence, self.model, self.golden)
