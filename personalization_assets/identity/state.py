"""What one resolution run returns and what the next run needs from it."""

from __future__ import annotations

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
        return ResolvedState(self.crosswalk, self.evidence, self.model)
