"""Households: the people (golden customers) who share a postal address or a mailbox.

A household is not a person: the matcher keeps its members apart, and marketing uses this
table for household frequency caps ("one catalogue per letterbox"). Customers are joined when
two of them share a normalized street and postcode, or an e-mail mailbox; a value shared by
more than ``max_members`` customers (an apartment block without flat numbers, an office
switchboard address) is a building, not a household, and joins nobody.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from personalization_assets.identity.blocking import combine
from personalization_assets.identity.cluster import components
from personalization_assets.identity.prepare import features

HOUSEHOLD_COLUMNS = ["customer_key", "household_id", "household_size", "shared_address", "shared_mailbox"]
MAX_MEMBERS = 12


def _shared(customer: np.ndarray, key: np.ndarray, max_members: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges (customer, customer) between the customers holding the same key value, as stars."""
    df = pd.DataFrame({"c": customer, "k": key})
    df = df[df["k"] >= 0].drop_duplicates()
    size = df.groupby("k")["c"].transform("size")
    df = df[(size >= 2) & (size <= max_members)]
    first = df.groupby("k")["c"].transform("first")
    m = first != df["c"]
    return first[m].to_numpy(), df.loc[m, "c"].to_numpy()


def households(records: pd.DataFrame, crosswalk: pd.DataFrame, max_members: int = MAX_MEMBERS) -> pd.DataFrame:
    """One row per customer: its household id (stable: derived from the smallest member key),
    the number of customers in it, and whether it was joined by an address and/or a mailbox."""
    if records.empty or crosswalk.empty:
        return pd.DataFrame(columns=HOUSEHOLD_COLUMNS)
    records = records.drop_duplicates("record_id", keep="last").reset_index(drop=True)
    f = features(records)
    keys = records["record_id"].astype(str).map(crosswalk.set_index("record_id")["customer_key"])
    ok = keys.notna().to_numpy()
    cust_codes, cust = pd.factorize(keys[ok])
    address = combine(f.codes["street"].astype(np.int64), f.codes["postcode"].astype(np.int64))[ok]
    mailbox = f.codes["email"].astype(np.int64)[ok]
    addr_edges, mail_edges = _shared(cust_codes, address, max_members), _shared(cust_codes, mailbox, max_members)
    left = np.concatenate([addr_edges[0], mail_edges[0]]).astype(np.int64)
    right = np.concatenate([addr_edges[1], mail_edges[1]]).astype(np.int64)
    label = components(len(cust), left, right)
    out = pd.DataFrame({"customer_key": np.asarray(cust, dtype=object), "label": label})
    anchor = out.groupby("label")["customer_key"].transform("min")
    out["household_id"] = anchor.map(lambda k: "hh_" + hashlib.sha1(k.encode()).hexdigest()[:16])
    out["household_size"] = out.groupby("label")["customer_key"].transform("size").astype("int64")
    out["shared_address"] = np.isin(np.arange(len(cust)), np.concatenate(addr_edges))
    out["shared_mailbox"] = np.isin(np.arange(len(cust)), np.concatenate(mail_edges))
    return out[HOUSEHOLD_COLUMNS].sort_values("customer_key", ignore_index=True)
