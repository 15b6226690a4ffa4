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
from collections import Counter
from collections.abc import Callable
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

    def trusted(self, watermark: datetime | None, now: datetime) -> datetime | None:
        """The stored watermark, or None (load everything again) when it lies later than these rules
        allow: an older version moved it to a future row's time, or the clock went back. Rows before
        such a watermark may never have been loaded; re-reading them is safe, as loads are upserts."""
        return watermark if watermark is not None and watermark <= now - self.safety_lag else None

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
    oldest: datetime | None = None  # the earliest updated_at among the loadable rows


def payload_text(row: dict) -> str:
    """A row as JSON text; text that is not valid UTF-8 shows its bytes escaped ("Jos\\xe9")."""
    def safe(value):
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return value
    return json.dumps({k: safe(v) for k, v in row.items()}, default=str, sort_keys=True)


def content_id(payload: str) -> str:
    """An id for a record without a key: a hash of its content, stable across reruns (so a rerun
    adds no quarantine row) and distinct for distinct records (so two never collapse into one;
    `screen` numbers records of the same content)."""
    return "sha256:" + hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def content_ids(payloads: pd.Series, seen: Counter | None = None) -> pd.Series:
    """`content_id` of each payload, made distinct within one load: the second record with the
    same content is `<id>#2`, and so on (two identical keyless orders are two orders, never one
    quarantine row; the same listing read again numbers them the same way). `seen` carries the
    count per id across the chunks of one load, and is updated."""
    ids = payloads.map(content_id)
    before = ids.map(seen).fillna(0).astype(int) if seen else 0
    number = ids.groupby(ids).cumcount() + before
    if seen is not None:
        seen.update(ids.tolist())
    return ids.where(number == 0, ids + "#" + (number + 1).astype(str))


Message = str | pd.Series | Callable[[pd.Series], pd.Series]  # a callable gets the mask of rows it names


def screen(frame: pd.DataFrame, *, key: str, stamps: pd.DataFrame, record_ids: pd.Series, now: datetime,
           window: IncrementalWindow = WINDOW, checks: list[tuple[pd.Series, str, Message]] = (),
           payloads: pd.Series | None = None, keyless_seen: Counter | None = None) -> Screened:
    """Split a load into the rows to upsert and the rejections, each row with its first failure.

    `stamps` holds the parsed `updated_at` (`ts`, `ts_issue`, as from `normalize.parse_timestamps`);
    `record_ids` the quarantine id of each keyed row; `checks` are the source's own
    (mask, rule, message) checks, applied after the key and the timestamp; `payloads` the text a
    rejection keeps (default: the row as JSON, made only for the rows that need one);
    `keyless_seen` numbers keyless records on from earlier chunks of the same load (`content_ids`).
    """
    frame = frame.reset_index(drop=True)
    given = None if payloads is None else payloads.reset_index(drop=True)

    def payload(mask: pd.Series) -> pd.Series:
        if given is not None:
            return given[mask]
        return pd.Series([payload_text(r) for r in frame[mask].to_dict("records")], index=frame.index[mask],
                         dtype=object)

    keys = frame[key]
    keyless = keys.isna() | keys.map(lambda v: isinstance(v, str) and not v.strip())
    ids = record_ids.reset_index(drop=True).astype(object)
    if keyless.any():
        ids[keyless] = content_ids(payload(keyless), keyless_seen)
    ts, issue = stamps["ts"].reset_index(drop=True), stamps["ts_issue"].reset_index(drop=True)
    ordered = [
        (keyless, KEY_MISSING, f"no {key}: the record cannot be keyed, so it is not loaded"),
        (ts.isna(), UPDATED_AT_INVALID, lambda m: "updated_at " + frame.loc[m, "updated_at"].map(
            lambda v: repr(v)[:60]) + " is not a timestamp: " + issue[m].fillna("").astype(str)),
        (ts > pd.Timestamp(now) + window.clock_skew, UPDATED_AT_FUTURE, lambda m: "updated_at " + ts[m].astype(str)
         + f" is later than now + {window.clock_skew} (a wrong clock?); it loads once that time has come or "
         "the source corrects it"),
        *((m.reset_index(drop=True), r, msg.reset_index(drop=True) if isinstance(msg, pd.Series) else msg)
          for m, r, msg in checks),
    ]
    failed = pd.Series(None, index=frame.index, dtype=object)
    message = pd.Series(None, index=frame.index, dtype=object)
    for mask, rule, text in ordered:
        hit = mask.fillna(False).astype(bool) & failed.isna()
        if not hit.any():
            continue
        failed[hit] = rule
        message[hit] = text(hit) if callable(text) else text[hit] if isinstance(text, pd.Series) else text
    bad = failed.notna()
    rejected = [pd.DataFrame({"record_id": ids[bad], "raw_payload": payload(bad) if bad.any() else None,
                              "rule": failed[bad], "message": message[bad]})]
    ok = ~bad
    newest = ts[ok].max() if ok.any() else None
    rows, conflicts, superseded = _latest_versions(frame, ok, key, ts, payload, ids)
    rejected.append(conflicts)
    out = pd.concat([r for r in rejected if len(r)], ignore_index=True) if any(len(r) for r in rejected) \
        else pd.DataFrame(columns=REJECTION_COLUMNS)
    oldest = ts[rows.index].min() if len(rows) else None
    return Screened(rows, out[REJECTION_COLUMNS], _python_time(newest), superseded, _python_time(oldest))


def _python_time(stamp) -> datetime | None:
    return None if stamp is None or pd.isna(stamp) else stamp.to_pydatetime()


def _latest_versions(frame: pd.DataFrame, ok: pd.Series, key: str, ts: pd.Series,
                     payload: Callable[[pd.Series], pd.Series],
                     ids: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """One row per key among the `ok` rows: its latest version. Versions of one key with the same
    latest `updated_at` but different contents contradict each other: none is loaded, all go to
    quarantine together. Only keys read more than once cost any work here."""
    keys = frame[key].astype(str).where(ok)
    repeated = ok & keys.duplicated(keep=False)
    if not repeated.any():
        return frame[ok], pd.DataFrame(columns=REJECTION_COLUMNS), 0
    latest = ts[repeated].groupby(keys[repeated]).transform("max")
    top = ts[repeated] == latest
    top_rows = top[top].index
    texts = payload(pd.Series(frame.index.isin(top_rows), index=frame.index))
    distinct = texts.groupby(keys[top_rows]).nunique()
    in_conflict = keys.isin(set(distinct[distinct > 1].index)) & repeated
    conflict_rows = [
        {"record_id": ids[group.index[0]], "rule": DUPLICATE_KEY,
         "raw_payload": json.dumps([json.loads(texts[i]) for i in group.index]),
         "message": f"{len(group)} different versions of {key}={k!r} share the latest updated_at; "
                    "none is loaded until the source resolves them"}
        for k, group in keys[top_rows][in_conflict[top_rows]].groupby(keys[top_rows][in_conflict[top_rows]])]
    superseded_rows = top[~top].index
    drop = pd.Series(False, index=frame.index)
    drop[superseded_rows] = True
    drop |= in_conflict
    drop |= repeated & ~drop & keys.where(repeated & ~drop).duplicated(keep="first")  # the same row read twice
    return frame[ok & ~drop], pd.DataFrame(conflict_rows, columns=REJECTION_COLUMNS), len(superseded_rows)
