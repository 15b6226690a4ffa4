"""Stitch anonymous browser ids to known users, and users to customer keys.

An ``identify`` call, an ``alias`` or a login event carrying both an anonymousId and a
userId proves that the device belongs to that user, so the device's earlier (pre-login)
events belong to the same customer. A device seen with several users (shared computer)
maps to the most recent one and is flagged.
"""

from __future__ import annotations

import pandas as pd

LOGIN_EVENTS = frozenset({"signed in", "logged in", "login", "log in", "sign in", "user signed in",
                          "signed_in", "logged_in", "user_logged_in", "account login"})
IDENTITY_MAP_COLUMNS = ["anonymous_id", "user_id", "customer_key", "method", "first_seen", "last_seen",
                        "users_on_device"]


def _user_keys(crosswalk: pd.DataFrame) -> pd.Series:
    """user_id -> customer_key; a userId is a record id ("crm:42") or the CRM id ("42")."""
    cw = crosswalk.dropna(subset=["customer_key"])
    by_record = pd.Series(cw["customer_key"].to_numpy(), index=cw["record_id"].astype(str))
    crm = by_record[by_record.index.str.startswith("crm:")]
    by_crm_id = pd.Series(crm.to_numpy(), index=crm.index.str.removeprefix("crm:"))
    both = pd.concat([by_record, by_crm_id])
    return both[~both.index.duplicated(keep="first")]


def stitch_identities(events: pd.DataFrame, crosswalk: pd.DataFrame) -> pd.DataFrame:
    """identity_map rows: one per anonymous device linked to a user, plus one per user
    (anonymous_id NULL), each with the customer_key the user resolves to (NULL if unknown)."""
    if events.empty:
        return pd.DataFrame(columns=IDENTITY_MAP_COLUMNS)
    ev = events.copy()
    ev["timestamp"] = pd.to_datetime(ev["timestamp"], utc=True, errors="coerce")
    ev["user_id"] = ev["user_id"].astype("string").str.strip().replace("", pd.NA)
    ev["anonymous_id"] = ev["anonymous_id"].astype("string").str.strip().replace("", pd.NA)
    name = ev.get("event", pd.Series(pd.NA, index=ev.index)).astype("string").str.strip().str.lower()
    kind = ev["type"].astype("string").str.lower()
    method = kind.where(kind.isin(["identify", "alias"]), pd.Series("login", index=ev.index).where(name.isin(LOGIN_EVENTS)))
    links = ev.assign(method=method).dropna(subset=["user_id", "anonymous_id", "method"])
    users = ev.dropna(subset=["user_id"]).groupby("user_id").agg(
        first_seen=("timestamp", "min"), last_seen=("timestamp", "max")).reset_index()
    return stitch(links[["user_id", "anonymous_id", "timestamp", "method"]], users, crosswalk)


def stitch(links: pd.DataFrame, users: pd.DataFrame, crosswalk: pd.DataFrame) -> pd.DataFrame:
    """identity_map rows from the link events (user_id, anonymous_id, timestamp, method; in event
    order) and each user's first and last event (user_id, first_seen, last_seen): what
    `stitch_identities` reduces the events to, or `LINKS_SQL` / `USERS_SQL` in the warehouse."""
    links = links.assign(timestamp=pd.to_datetime(links["timestamp"], utc=True))
    links = links.sort_values("timestamp", kind="stable")
    grouped = links.groupby("anonymous_id")
    devices = grouped.agg(first_seen=("timestamp", "min"), last_seen=("timestamp", "max"),
                          users_on_device=("user_id", "nunique"))
    latest = links.drop_duplicates("anonymous_id", keep="last").set_index("anonymous_id")
    devices["user_id"] = latest["user_id"]
    devices["method"] = latest["method"]
    devices = devices.reset_index()

    users = users.assign(first_seen=pd.to_datetime(users["first_seen"], utc=True),
                         last_seen=pd.to_datetime(users["last_seen"], utc=True))
    users["anonymous_id"] = pd.array([pd.NA] * len(users), dtype="string")
    users["method"], users["users_on_device"] = "user_id", 1
    out = pd.concat([devices, users], ignore_index=True)
    out["customer_key"] = out["user_id"].map(_user_keys(crosswalk))
    return out[IDENTITY_MAP_COLUMNS]


def links_sql(events: str) -> str:
    """The link events of table `events` (an identify, an alias or a login with both ids), as
    `stitch` reads them: the rows a warehouse hands over instead of every event."""
    logins = ", ".join(f"'{name}'" for name in sorted(LOGIN_EVENTS))
    return (f"select user_id, anonymous_id, ts as timestamp, method from ("
            f"select nullif(trim(e.user_id), '') as user_id, nullif(trim(e.anonymous_id), '') as anonymous_id,"
            f" e.timestamp as ts, case when lower(e.type) in ('identify', 'alias') then lower(e.type)"
            f" when lower(trim(e.event)) in ({logins}) then 'login' end as method from {events} e) l"
            f" where user_id is not null and anonymous_id is not null and method is not null"
            f" order by ts, user_id, anonymous_id")


def users_sql(events: str) -> str:
    """Each user id of table `events` with its first and last event time, aggregated in the warehouse."""
    return (f"select user_id, min(ts) as first_seen, max(ts) as last_seen from ("
            f"select nullif(trim(e.user_id), '') as user_id, e.timestamp as ts from {events} e) u"
            f" where user_id is not null group by user_id order by user_id")


IDENTITY_MAP_OUTPUT = ["identity_type", "identity", "customer_key", "user_id", "method", "first_seen", "last_seen",
                       "users_on_device"]


def identity_map_sql(events: str, crosswalk: str) -> str:
    """`stitch` as one query over tables `events` and `crosswalk` (record_id, customer_key), in
    the identity map's columns (IDENTITY_MAP_OUTPUT), unresolved users included (customer_key
    NULL): the warehouse never hands the events or the crosswalk to Python. A device takes the
    user and method of its latest link (ties: the greater user id; a link without a time counts as
    the latest, as pandas sorts NaT last)."""
    return f"""
    with links as ({links_sql(events)}),
    devices as (
      select anonymous_id, min(timestamp) as first_seen, max(timestamp) as last_seen,
             count(distinct user_id) as users_on_device
      from links group by anonymous_id),
    latest as (
      select anonymous_id, user_id, method from links
      qualify row_number() over (partition by anonymous_id order by timestamp desc nulls first, user_id desc) = 1),
    users as ({users_sql(events)}),
    user_keys as (
      select uid, customer_key from (
        select cast(record_id as varchar) as uid, customer_key, 0 as pref from {crosswalk}
        where customer_key is not null
        union all
        select substr(cast(record_id as varchar), 5), customer_key, 1 from {crosswalk}
        where customer_key is not null and cast(record_id as varchar) like 'crm:%') k
      qualify row_number() over (partition by uid order by pref) = 1),
    stitched as (
      select 'anonymous_id' as identity_type, d.anonymous_id as identity, l.user_id, l.method,
             d.first_seen, d.last_seen, d.users_on_device
      from devices d join latest l on l.anonymous_id = d.anonymous_id
      union all
      select 'user_id', user_id, user_id, 'user_id', first_seen, last_seen, 1 from users)
    select s.identity_type, s.identity, k.customer_key, s.user_id, s.method, s.first_seen, s.last_seen,
           cast(s.users_on_device as bigint) as users_on_device
    from stitched s left join user_keys k on k.uid = s.user_id"""
