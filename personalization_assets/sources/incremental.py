"""What every incremental source load shares: how far to trust the source's clock, and how rows a
load cannot key or position are set aside (quarantined with a reason) instead of failing the load.

The watermark of a source is the latest `updated_at` it has loaded, but never later than
now - `safety_lag`: a row stamped in the future (a wrong clock, a typo such as 2030) is
quarantined when it lies beyond now + `clock_skew`, and even a row just ahead of our clock cannot
move the watermark past now. Each load reads again from watermark - `lookback`, so a transaction
that committed late with an older `updated_at` is still loaded; loads are upserts on the source's
key, so reading the overlap again never duplicates anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from ..quality.quarantine import RAW_RULE_PREFIX  # raw-layer rules: released only by the raw layer

REJECTION_COLUMNS = ["record_id", "raw_payload", "rule", "message"]
KEY_MISSING = RAW_RULE_PREFIX + "key_missing"
UPDATED_AT_INVALID = RAW_RULE_PREFIX + "updated_at_invalid"
UPDATED_AT_FUTURE = RAW_RULE_PREFIX + "updated_at_future"
DUPLICATE_KEY = RAW_RULE_PREFIX + "duplicate_key"


@dataclass(frozen=True)
class IncrementalWindow:
    clock_skew: timedelta = timedelta(minutes=5)  # a row up to this far ahead of now is accepted
    safety_lag: timedelta = timedelta(minutes=5)  # the watermark stays at least this far behind now
    lookback: timedelta = timedelta(hours=1)  # each load re-reads this far before the watermark

    def read_from(self, watermark: datetime | None) -> datetime | None:
        return None if watermark is None else watermark - self.lookback

    def advance(self, watermark: datetime | None, newest_loaded: datetime | None, now: datetime) -> datetime | None:
        """The next watermark: the newest row loaded, capped at now - safety_lag, never moving back."""
        candidates = [t for t in (watermark, newest_loaded and min(newest_loaded, now - self.safety_lag)) if t]
        return max(candidates) if candidates else None


WINDOW = IncrementalWindow()


@dataclass
class Screened:
    rows: pd.DataFrame  # loadable: keyed, positioned, one per key (its latest); index = input position
    rejected: pd.DataFrame  # REJECTION_COLUMNS
    newest: datetime | None  # the latest updated_at among the loadable rows
    superseded: int  # older versions of a key read in the same load (the latest one is loaded)


def payload_text(row: dict) -> str:
    """A row as JSON text; text that is not valid UTF-8 shows its bytes escaped ("Jos\\xe9")."""
    def safe(value):
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return value
    return json.dumps({k: safe(v) for k, v in row.items()}, default=str, sort_keys=True)


def content_id(payload: str) -> str:
    """An id for a record without a key: a hash of its content, stable across reruns (so a rerun
    adds no quarantine row) and distinct for distinct records (so two never collapse into one)."""
    return "sha256:" + hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def screen(frame: pd.DataFrame, *, key: str, stamps: pd.DataFrame, record_ids: pd.Series, now: datetime,
           window: IncrementalWindow = WINDOW, checks: list[tuple[pd.Series, str, pd.Series | str]] = (),
           payloads: pd.Series | None = None) -> Screened:
    """Split a load into the rows to upsert and the rejections, each row with its first failure.

    `stamps` holds the parsed `updated_at` (`ts`, `ts_issue`, as from `normalize.parse_timestamps`);
    `record_ids` the quarantine id of each keyed row; `checks` are the source's own
    (mask, rule, message) checks, applied after the key and the timestamp; `payloads` the text a
    rejection keeps (default: the row as JSON).
    """
    frame = frame.reset_index(drop=True)
    payloads = (pd.Series([payload_text(r) for r in frame.to_dict("records")], index=frame.index, dtype=object)
                if payloads is None else payloads.reset_index(drop=True))
    keyless = frame[key].map(lambda v: v is None or pd.isna(v) or (isinstance(v, str) and not v.strip()))
    ids = record_ids.reset_index(drop=True).astype(object).where(~keyless, payloads.map(content_id))
    ts, issue = stamps["ts"].reset_index(drop=True), stamps["ts_issue"].reset_index(drop=True)
    future = ts > pd.Timestamp(now) + window.clock_skew
    ordered = [
        (keyless, KEY_MISSING, f"no {key}: the record cannot be keyed, so it is not loaded"),
        (ts.isna(), UPDATED_AT_INVALID, "updated_at " + frame["updated_at"].map(lambda v: repr(v)[:60])
         + " is not a timestamp: " + issue.fillna("").astype(str)),
        (future, UPDATED_AT_FUTURE, "updated_at " + ts.astype(str) + f" is later than now + {window.clock_skew} "
         "(a wrong clock?); it loads once that time has come or the source corrects it"),
        *((m.reset_index(drop=True), r, msg.reset_index(drop=True) if isinstance(msg, pd.Series) else msg)
          for m, r, msg in checks),
    ]
    failed = pd.Series(None, index=frame.index, dtype=object)
    message = pd.Series(None, index=frame.index, dtype=object)
    for mask, rule, text in ordered:
        hit = mask.fillna(False).astype(bool) & failed.isna()
        failed[hit] = rule
        message[hit] = text[hit] if isinstance(text, pd.Series) else text
    rejected = [pd.DataFrame({"record_id": ids[failed.notna()], "raw_payload": payloads[failed.notna()],
                              "rule": failed[failed.notna()], "message": message[failed.notna()]})]
    ok = failed.isna()
    newest = ts[ok].max() if ok.any() else None
    rows, conflicts, superseded = _latest_versions(frame[ok], key, ts[ok], payloads[ok], ids[ok])
    rejected.append(conflicts)
    out = pd.concat([r for r in rejected if len(r)], ignore_index=True) if any(len(r) for r in rejected) \
        else pd.DataFrame(columns=REJECTION_COLUMNS)
    return Screened(rows, out[REJECTION_COLUMNS],
                    None if newest is None or pd.isna(newest) else newest.to_pydatetime(), superseded)


def _latest_versions(frame: pd.DataFrame, key: str, ts: pd.Series, payloads: pd.Series,
                     ids: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """One row per key: its latest version. Versions of one key with the same latest `updated_at`
    but different contents contradict each other: none is loaded, all go to quarantine together."""
    keys = frame[key].astype(str)
    latest = ts.groupby(keys).transform("max")
    top = ts == latest
    distinct_top = payloads[top].groupby(keys[top]).nunique()
    conflicting = set(distinct_top[distinct_top > 1].index)
    in_conflict = keys.isin(conflicting)
    conflict_rows = [
        {"record_id": ids[group.index[0]], "rule": DUPLICATE_KEY,
         "raw_payload": json.dumps([json.loads(p) for p in payloads[group.index]]),
         "message": f"{len(group)} different versions of {key}={k!r} share the latest updated_at; "
                    "none is loaded until the source resolves them"}
        for k, group in keys[in_conflict & top].groupby(keys[in_conflict & top])]
    candidates = top & ~in_conflict
    keep = candidates & ~keys.where(candidates).duplicated(keep="first")  # the same row read twice: once
    superseded = int((~top).sum())
    return frame[keep], pd.DataFrame(conflict_rows, columns=REJECTION_COLUMNS), superseded
