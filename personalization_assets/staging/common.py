"""What every staging function shares: the result shapes, per-source formats and rejections."""

from __future__ import annotations

import json
from dataclasses import dataclass

import orjson
import pandas as pd

REJECTION_COLUMNS = ["record_id", "raw_payload", "rule", "message"]
REPORTING_CURRENCY = "EUR"


@dataclass(frozen=True)
class SourceFormat:
    """How a source writes dates: day/month order and the zone of naive times. Set per source,
    never guessed per row ("03/04/2024" is 3 April only where the source says day comes first)."""

    day_first: bool = False
    assume_tz: str = "UTC"


SOURCE_FORMATS = {
    "crm": SourceFormat(day_first=False, assume_tz="UTC"),
    "shop": SourceFormat(day_first=False, assume_tz="UTC"),
}


@dataclass
class Staged:
    valid: pd.DataFrame
    quarantined: pd.DataFrame  # REJECTION_COLUMNS
    unmapped: dict[str, dict[str, int]] | None = None  # lookup -> raw value -> rows


@dataclass
class StagedOrders:
    orders: pd.DataFrame
    lines: pd.DataFrame
    quarantined: pd.DataFrame
    unmapped: dict[str, dict[str, int]] | None = None


def payloads(frame: pd.DataFrame) -> list[str]:
    """Rows as JSON text: the raw payload a quarantined record keeps."""
    return [json.dumps(r, default=str, sort_keys=True) for r in frame.to_dict("records")]


def reject(raw: pd.DataFrame, ids: pd.Series, mask: pd.Series, rule: str, messages) -> pd.DataFrame:
    """Rejections of the raw rows under `mask`, with their raw payload; `messages` is one text or a Series."""
    rows = raw[mask.to_numpy()]
    message = messages[mask].astype(str).to_numpy() if isinstance(messages, pd.Series) else messages
    return pd.DataFrame({"record_id": ids[mask].astype(str).to_numpy(), "raw_payload": payloads(rows),
                         "rule": rule, "message": message}, columns=REJECTION_COLUMNS)


def first_failures(raw: pd.DataFrame, ids: pd.Series,
                   checks: list[tuple[pd.Series, str, object]]) -> tuple[pd.Series, list[pd.DataFrame]]:
    """Apply (mask, rule, message) checks in order; each row is rejected once, by its first failure.
    Returns the mask of rows still valid and the rejection frames."""
    rejected = pd.Series(False, index=raw.index)
    parts = []
    for mask, rule, message in checks:
        mask = mask.reindex(raw.index).fillna(False).astype(bool) & ~rejected
        if mask.any():
            parts.append(reject(raw, ids, mask, rule, message))
        rejected |= mask
    return ~rejected, parts


def concat_rejections(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p[REJECTION_COLUMNS] for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=REJECTION_COLUMNS)


def raw_payload_of(rejections: pd.DataFrame, raw: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    """Rule rejections carry the staged row; swap in the raw source row where the id is known."""
    if rejections.empty:
        return rejections[REJECTION_COLUMNS] if set(REJECTION_COLUMNS) <= set(rejections.columns) \
            else pd.DataFrame(columns=REJECTION_COLUMNS)
    ids = ids.astype(str)
    rejected = ids.isin(set(rejections["record_id"].astype(str))).to_numpy()  # only their rows: JSON is slow
    by_id = dict(zip(ids[rejected], payloads(raw[rejected])))
    out = rejections.copy()
    out["raw_payload"] = [by_id.get(r, p) for r, p in zip(out["record_id"].astype(str), out["raw_payload"])]
    return out[REJECTION_COLUMNS]


def unmapped_counts(raw: pd.Series, unmapped: pd.Series) -> dict[str, int]:
    """Raw values a lookup did not know, with their row counts (reported, never passed silently)."""
    counts = raw[unmapped.to_numpy()].astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items()}


UTC = "datetime64[ns, UTC]"


def typed(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """Fix the types of a staged frame, so that an empty one still creates the right table."""
    return frame.astype({c: t for c, t in dtypes.items() if c in frame.columns and str(frame[c].dtype) != t})


def utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")


def json_text(value) -> str:
    """Compact JSON text (orjson: ~10x the standard library), falling back for what it refuses."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # e.g. an integer beyond 64 bits, or non-string keys
        return json.dumps(value, default=str)
