"""Golden records: one row per customer_key, each field with the record it came from.

Rules: names take the most frequent value (ties: source priority, then most recent);
every other field takes the most recent non-null value (ties: source priority). Consent
follows the same "most recent wins" rule, because the latest statement of a person counts.
"""

from __future__ import annotations

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
    r["customer_key"] = keys.to_numpy()
    out = r.groupby("customer_key", sort=True).agg(
        source_records=("record_id", "size"), first_seen=("_ts", "min"), last_updated=("_ts", "max"))
    recent = r.sort_values(["customer_key", "_ts", "_prio"], ascending=[True, False, True], na_position="last")
    for field in RECENT_FIELDS:
        if field not in r:
            continue
        pick = recent.loc[recent[field].notna(), ["customer_key", field, "record_id"]]
        pick = pick.drop_duplicates("customer_key").set_index("customer_key")
        out[field] = pick[field].reindex(out.index)
        out[f"{field}_source"] = pick["record_id"].reindex(out.index)
    for field in NAME_FIELDS:
        if field not in r:
            continue
        named = r.loc[r[field].notna() & (r[field].astype(str).str.strip() != "")]
        freq = named.groupby(["customer_key", field])["record_id"].transform("size")
        pick = named.assign(_n=freq).sort_values(
            ["customer_key", "_n", "_prio", "_ts"], ascending=[True, False, True, False], na_position="last")
        pick = pick.drop_duplicates("customer_key").set_index("customer_key")
        out[field] = pick[field].reindex(out.index)
        out[f"{field}_source"] = pick["record_id"].reindex(out.index)
    out = out.reset_index()
    out["n_sources"] = r.groupby("customer_key")["source"].nunique().reindex(out["customer_key"]).to_numpy() \
        if "source" in r else 1
    return out
