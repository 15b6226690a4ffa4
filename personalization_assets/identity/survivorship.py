"""Golden records: one row per customer_key, each field with the record it came from.

Rules: names take the most frequent value (ties: source priority, then most recent);
every other field takes the most recent non-null value (ties: source priority). Consent
follows the same "most recent wins" rule, because the latest statement of a person counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NAME_FIELDS = ("first_name", "last_name")
RECENT_FIELDS = ("email", "email_key", "phone", "street", "city", "postcode", "country",
                 "birth_date", "timezone", "locale", "email_opt_in", "consent_processing")


def golden_records(records: pd.DataFrame, keys: pd.Series, priority: tuple[str, ...]) -> pd.DataFrame:
    """``keys`` aligns with ``records`` and gives each record its customer_key."""
    codes, uniq = pd.factorize(keys.to_numpy())
    rank = {s: i for i, s in enumerate(priority)}
    prio = (records["source"].map(rank).fillna(len(rank)).to_numpy(float) if "source" in records
            else np.zeros(len(records)))
    ts = (pd.to_datetime(records["updated_at"], utc=True, errors="coerce") if "updated_at" in records
          else pd.Series(pd.NaT, index=records.index, dtype="datetime64[ns, UTC]"))
    ts_num = ts.to_numpy("datetime64[ns]").astype(np.int64).astype(float)
    ts_num[ts.isna().to_numpy()] = -np.inf  # unknown time ranks last
    rid = records["record_id"].to_numpy(object)
    out = pd.DataFrame({"customer_key": uniq, "source_records": np.bincount(codes, minlength=len(uniq))})
    # one ordering for "most recent non-null": customer, newest first, then source priority
    recent = np.lexsort((prio, -ts_num, codes))
    out["first_seen"], out["last_updated"] = _time_span(ts, codes[recent], recent, len(uniq))
    for field in RECENT_FIELDS:
        if field in records:
            _take(out, records[field], rid, codes, recent)
    for field in NAME_FIELDS:
        if field not in records:
            continue
        name_code = _name_codes(records[field])
        pair = pd.factorize(codes.astype(np.int64) * (int(name_code.max(initial=0)) + 2) + name_code + 1)[0]
        freq = np.bincount(pair)[pair]
        order = np.lexsort((-ts_num, prio, -freq, codes))
        _take(out, records[field], rid, codes, order, valid=name_code >= 0)
    out["n_sources"] = (records["source"].groupby(codes).nunique().reindex(out.index).to_numpy()
                        if "source" in records else 1)
    return out


def _time_span(ts: pd.Series, sorted_codes: np.ndarray, order: np.ndarray, k: int) -> tuple[pd.Series, pd.Series]:
    """Earliest and latest known time per customer (NaT if none), like groupby min/max but over
    the runs of ``order`` (rows sorted by customer), without a groupby's copies."""
    times = ts.dt.tz_localize(None).to_numpy()
    raw = times.view(np.int64)[order]
    nat, top = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    first, last = np.full(k, nat), np.full(k, nat)
    if raw.size:
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        seg, ok = sorted_codes[starts], sorted_codes[starts] >= 0
        low = np.minimum.reduceat(np.where(raw == nat, top, raw), starts)
        first[seg[ok]] = np.where(low == top, nat, low)[ok]
        last[seg[ok]] = np.maximum.reduceat(raw, starts)[ok]
    as_time = lambda v: pd.Series(v.view(times.dtype)).dt.tz_localize(ts.dt.tz)  # noqa: E731
    return as_time(first), as_time(last)


def _name_codes(values: pd.Series) -> np.ndarray:
    """One code per distinct name after trimming (-1: missing or blank). The distinct values are
    trimmed, not every record's: a million temporary strings would leave the heap fragmented."""
    raw, uniq = pd.factorize(values, use_na_sentinel=True)
    stripped = pd.Series(uniq, dtype=object).astype("string").str.strip().replace("", pd.NA)
    trimmed = np.append(pd.factorize(stripped, use_na_sentinel=True)[0], -1)  # raw -1 -> -1
    return trimmed[raw]


def _take(out, values: pd.Series, rid, codes, order, valid=None) -> None:
    """First valid row per customer in ``order`` wins; remember the record it came from."""
    ok = values.notna().to_numpy() if valid is None else valid
    idx = order[ok[order]]
    cust, first = np.unique(codes[idx], return_index=True)
    rows = idx[first]
    col = pd.Series(pd.NA, index=out.index, dtype=object)
    col.iloc[cust] = values.to_numpy(object)[rows]
    src = pd.Series(pd.NA, index=out.index, dtype=object)
    src.iloc[cust] = rid[rows]
    out[values.name] = col.infer_objects() if col.notna().any() else col
    out[f"{values.name}_source"] = src
