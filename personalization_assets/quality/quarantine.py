"""The quarantine tables (`quarantine.<source>`): a pure merge of new rejections, and the rate check.

One row per (record_id, rule). A rule re-seen while open bumps `attempts` and `last_seen`; an open
row whose record was re-validated in this run (`checked_ids`) and no longer fails that rule becomes
`released` with `released_at`; the collector's replay marks the events it moved `replayed`.
Reprocessing the same input never adds a row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from ..warehouse import identifier

COLUMNS = [
    "source", "record_id", "raw_payload", "rule", "message", "first_seen", "last_seen",
    "attempts", "status", "released_at",
]
DTYPES = {
    "source": "object", "record_id": "object", "raw_payload": "object", "rule": "object",
    "message": "object", "first_seen": "datetime64[ns, UTC]", "last_seen": "datetime64[ns, UTC]",
    "attempts": "int64", "status": "object", "released_at": "datetime64[ns, UTC]",
}
REJECTED_COLUMNS = ["source", "record_id", "rule", "message", "raw_payload"]
OPEN, RELEASED, REPLAYED = "open", "released", "replayed"


def empty() -> pd.DataFrame:
    """A typed empty quarantine table."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in DTYPES.items()})


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill columns an older table lacks (released_at) and fix the types."""
    out = frame.copy()
    for column, dtype in DTYPES.items():
        if column not in out.columns:
            out[column] = pd.Series(pd.NaT if "datetime" in dtype else None, index=out.index)
        if "datetime" in dtype:
            out[column] = pd.to_datetime(out[column], utc=True)
    out["attempts"] = out["attempts"].fillna(0).astype("int64")
    for column in ("record_id", "rule"):
        out[column] = out[column].astype(str)
    return out[COLUMNS]


RAW_RULE_PREFIX = "raw."  # rules of the raw layer (see `sources.incremental`)


def merge(existing: pd.DataFrame, rejected: pd.DataFrame, *, checked_ids: Iterable[str] = (),
          now: datetime, raw_layer: bool = False) -> pd.DataFrame:
    """The quarantine table after a run that re-validated `checked_ids` and rejected `rejected`.

    Only the layer that made a rejection releases it: a `raw.*` row names a source version that was
    never loaded, so a staging run that re-validates the older version it has does not release it;
    the raw layer does (`raw_layer=True`), once a later version of the record has loaded.

    `rejected` has source, record_id, rule, message, raw_payload. A key seen again while open keeps
    its first_seen and counts one more attempt; a released or replayed key rejected again opens
    afresh (first_seen = now, attempts = 1).
    """
    now_ts = pd.Timestamp(now)
    table = _typed(existing) if len(existing) else empty()
    missing = [c for c in REJECTED_COLUMNS if c not in rejected.columns]
    if missing and len(rejected):
        raise ValueError(f"rejected rows lack {missing}: give each its source, record_id, rule, message, raw_payload")
    new = rejected.reindex(columns=REJECTED_COLUMNS).drop_duplicates(subset=["record_id", "rule"])
    new["record_id"] = new["record_id"].astype(str)
    new["rule"] = new["rule"].astype(str)
    keys = pd.MultiIndex.from_frame(table[["record_id", "rule"]])
    open_prior = table[table["status"] == OPEN].set_index(["record_id", "rule"])
    new_keys = pd.MultiIndex.from_frame(new[["record_id", "rule"]])
    seen = new_keys.isin(open_prior.index)
    prior = open_prior.reindex(new_keys)
    new = new.assign(
        first_seen=pd.Series(prior["first_seen"].to_numpy(), index=new.index).where(seen, now_ts),
        last_seen=now_ts,
        attempts=(prior["attempts"].fillna(0).astype("int64").to_numpy() + 1) * seen + (~seen) * 1,
        status=OPEN,
        released_at=pd.NaT,
        raw_payload=new["raw_payload"].astype(str),
        message=new["message"].astype(str),
    )
    kept = table[~keys.isin(new_keys)].copy()
    fixed = (kept["record_id"].isin(set(map(str, checked_ids))) & (kept["status"] == OPEN)
             & (kept["rule"].str.startswith(RAW_RULE_PREFIX) == raw_layer))
    kept.loc[fixed, "status"] = RELEASED
    kept.loc[fixed, "released_at"] = now_ts
    frames = [f for f in (kept, _typed(new)) if len(f)]
    return pd.concat(frames, ignore_index=True)[COLUMNS] if frames else empty()


def prepare_table(conn, source: str) -> None:
    """Create `quarantine.<source>` if missing, and add `released_at` to a table made before it.

    `conn` is a `personalization_assets.warehouse.WarehouseConnection`. DDL: call before a transaction
    (Snowflake commits on DDL).
    """
    conn.prepare_table("quarantine", source, empty())
    if "released_at" not in conn.query(f"select * from quarantine.{identifier(source)} limit 0").columns:
        kind = "timestamptz" if conn.dialect == "duckdb" else "timestamp_tz"
        conn.execute(f"alter table quarantine.{identifier(source)} add column released_at {kind}")


# -- quarantine rate -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RateThresholds:
    """Share of a source's rows in open quarantine above which the check warns, then errors."""

    warn: float = 0.01
    error: float = 0.05


@dataclass(frozen=True)
class RateVerdict:
    share: float
    level: str  # "ok", "warn" or "error"


def quarantine_rate(rows: int, open_rows: int, thresholds: RateThresholds = RateThresholds()) -> RateVerdict:
    """`open_rows / rows`, and whether it is above the warn or the error threshold."""
    share = open_rows / rows if rows else 0.0
    level = "error" if share > thresholds.error else "warn" if share > thresholds.warn else "ok"
    return RateVerdict(share, level)
