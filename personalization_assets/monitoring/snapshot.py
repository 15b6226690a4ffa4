"""Turn the latest materialization of each asset into metric samples (plain Python, no Dagster).

Reads the metadata convention every asset follows: `dagster/row_count`, `rows_in`, `quarantined`,
`quarantined_by_rule`, `duplicates_merged`, `segment_sizes` / `segment_size:<name>`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Materialization:
    asset: str  # asset key as a path: "staging/customers"
    timestamp: float  # unix seconds
    metadata: dict[str, Any]  # plain values (ints, dicts), not MetadataValue wrappers


@dataclass
class Samples:
    """metric name -> {labels: value}; later writes for the same labels win."""

    values: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))

    def set(self, name: str, value: float, **labels: str) -> None:
        self.values[name][tuple(sorted(labels.items()))] = float(value)

    def get(self, name: str, **labels: str) -> float | None:
        return self.values.get(name, {}).get(tuple(sorted(labels.items())))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _mapping(value: Any) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def materialization_samples(latest: list[Materialization], now: float, out: Samples | None = None) -> Samples:
    out = out or Samples()
    for m in latest:
        md = m.metadata
        out.set("asset_freshness_lag_seconds", max(0.0, now - m.timestamp), asset=m.asset)
        rows = _number(md.get("dagster/row_count"))
        if rows is not None:
            out.set("pipeline_asset_rows", rows, asset=m.asset)
        by_rule = {str(k): _number(v) for k, v in _mapping(md.get("quarantined_by_rule")).items()}
        by_rule = {k: v for k, v in by_rule.items() if v is not None}
        quarantined = _number(md.get("quarantined"))
        if not by_rule and quarantined is not None:
            by_rule = {"unspecified": quarantined}
        for rule, count in by_rule.items():
            out.set("pipeline_quarantined_rows", count, source=m.asset, rule=rule)
        rows_in = _number(md.get("rows_in"))
        if rows_in is None and rows is not None and by_rule:
            rows_in = rows + sum(by_rule.values())  # rows in = rows kept + rows refused
        if rows_in is not None:
            out.set("pipeline_asset_rows_in", rows_in, asset=m.asset)
        merged = _number(md.get("duplicates_merged"))
        if merged is not None:
            out.set("pipeline_duplicates_merged", merged, asset=m.asset)
        sizes = {str(k): _number(v) for k, v in _mapping(md.get("segment_sizes")).items()}
        sizes.update({k.split(":", 1)[1]: _number(v) for k, v in md.items() if k.startswith("segment_size:")})
        for segment, size in sizes.items():
            if size is not None:
                out.set("segment_size", size, segment=segment)
    return out
