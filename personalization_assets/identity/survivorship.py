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


def _ranked(records: pd.DataFrame, priority: tuple[str, ...]) -> pd.DataFrame:
    r = records.copy()
    rank = {s: i for i, s in enumerate(priority)}
    r["_prio"] = r["source"].map(rank).fillna(len(rank)) if "source" in r else 0
    r["_ts"] = pd.to_datetime(r["updated_at"], utc=True, errors="coerce") if "updated_at" in r else pd.NaT
    return r


def golden_records(records: pd.DataFrame, keys: pd.Series, priority: tuple[str, ...]) -> pd.DataFrame:
    """``keys`` aligns with ``records`` and gives each record its customer_key."""
    r = _ranked(records, priority)
    codes, uniq = pd.factorize(keys.to_numpy())
    r["_c"] = codes
    out = pd.DataFrame({"customer_key": uniq})
    out["source_records"] = np.bincount(codes, minlength=len(uniq))
    ts = r.groupby("_c")["_ts"]
    out["first_seen"], out["last_updated"] = ts.min().reindex(out.index), ts.max().reindex(out.index)
    recent = r.sort_values(["_c", "_ts", "_prio"], ascending=[True, False, True], na_position="last")
    for field in RECENT_FIELDS:
        if field in r:
            _take(out, recent.loc[recent[field].notna()], field)
    for field in NAME_FIELDS:
        if field not in r:
            continue
        named = r.loc[r[field].notna() & (r[field].astype("string").str.strip() != "")]
        name_code = pd.factorize(named[field])[0]
        freq = pd.Series(name_code).groupby([named["_c"].to_numpy(), name_code]).transform("size")
        named = named.assign(_n=freq.to_numpy())
        _take(out, named.sort_values(["_c", "_n", "_prio", "_ts"], ascending=[True, False, True, False],
                                     na_position="last"), field)
    out["n_sources"] = r.groupby("_c")["source"].nunique().reindex(out.index).to_numpy() if "source" in r else 1
    return out


def _take(out: pd.DataFrame, ranked: pd.DataFrame, field: str) -> None:
    """First row per customer of an already ranked frame wins; remember where it came from."""
    pick = ranked.drop_duplicates("_c").set_index("_c")
    out[field] = pick[field].reindex(out.index).to_numpy()
    out[f"{field}_source"] = pick["record_id"].reindex(out.index).to_numpy()
