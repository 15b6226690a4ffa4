"""The global suppression list: sticky unsubscribes, bounces and complaints, and erased people.

Sources: the platforms' webhooks and exports and the one-click endpoint (all through
`staging.email_suppressions`), and CRM opt-outs (`core.customers.email_opt_in = false`).

Sticky: an entry, once recorded, stays, whatever a later sync, CRM import or identity merge says.
Only an explicit opt-in event newer than the entry lifts an unsubscribe or a complaint
(`staging.email_events` of type group_resubscribe / subscribe / opt_in). A hard bounce (dead
address) and an erasure are never lifted. Consent for processing is a different thing and lives
on the customer record; it is not on this list.

Entries follow a person through identity merges (new customer_key, another golden address).
Erased people are kept only as SHA-256 of their e-mail (`email` null). When the same address comes
back through an import, its new customer_key is listed too, so the marts exclude it by key.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pandas as pd

from ..hashes import identifier_hash
from ..marts.inputs import Sql
from ..warehouse import column_types
from . import tables
from .model import UNSUBSCRIBE, Destination, SyncRow

COLUMNS = ["email", "customer_key", "reason", "source", "recorded_at", "email_sha256"]
STAGING_REASONS = {"hard_bounce": "bounced", "spam_report": "complained", "unsubscribe": "unsubscribed"}
OPT_IN_TYPES = ("group_resubscribe", "subscribe", "opt_in")
LIFTABLE = ("unsubscribed", "complained")
PROPAGATION_MAX_AGE = timedelta(days=2)  # Gmail/Yahoo bulk-sender rule


def _frame(rows: pd.DataFrame | list, **const) -> pd.DataFrame:
    frame = pd.DataFrame(rows).assign(**const) if len(rows) else pd.DataFrame(columns=COLUMNS)
    return frame.reindex(columns=COLUMNS)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    kept = [f.reindex(columns=COLUMNS) for f in frames if len(f)]
    return pd.concat(kept, ignore_index=True) if kept else _frame([])


def candidates(conn: Sql, now: datetime) -> pd.DataFrame:
    """Every entry the sources imply today (before stickiness and opt-ins)."""
    parts = []
    if conn.table_exists("staging", "email_suppressions"):
        staged = conn.query("select lower(email) as email, customer_key, reason, provider as source, "
                            "occurred_at as recorded_at from staging.email_suppressions")
        staged["reason"] = staged["reason"].map(STAGING_REASONS).fillna(staged["reason"])
        parts.append(_frame(staged))
    if conn.table_exists("core", "customers"):
        crm = conn.query("select lower(email) as email, customer_key from core.customers "
                         "where not coalesce(email_opt_in, false) and email is not null")
        parts.append(_frame(crm, reason="unsubscribed", source="crm", recorded_at=pd.Timestamp(now)))
    frame = _concat(parts)
    frame["email_sha256"] = frame["email"].map(lambda e: identifier_hash(e) if isinstance(e, str) else None)
    return frame


def _latest_opt_ins(conn: Sql) -> pd.Series:
    if not conn.table_exists("staging", "email_events"):
        return pd.Series(dtype="datetime64[ns, UTC]")
    marks = ", ".join("?" for _ in OPT_IN_TYPES)
    found = conn.query(f"select lower(email) as email, max(timestamp) as at from staging.email_events "
                       f"where lower(type) in ({marks}) group by 1", list(OPT_IN_TYPES))
    return pd.Series(pd.to_datetime(found["at"], utc=True).to_numpy(), index=found["email"])


def _reingested_erasures(conn: Sql, erased: pd.DataFrame) -> pd.DataFrame:
    """Customers whose address hashes to an erased one: listed by key, without the address."""
    if erased.empty or not conn.table_exists("core", "customers"):
        return _frame([])
    customers = conn.query("select customer_key, lower(email) as email from core.customers where email is not null")
    customers["email_sha256"] = customers["email"].map(identifier_hash)
    back = customers.merge(erased[["email_sha256", "recorded_at"]], on="email_sha256")
    return _frame(back.drop(columns=["email"]), reason="erased", source="erasure", email=None)


def _records_with_addresses(conn: Sql, emails: list[str]) -> pd.DataFrame:
    """(email, customer_key) of the source records whose address, lower-cased, is one of `emails`:
    looked up for the listed addresses only, not every staged customer's address read (3M rows,
    ~1.2 GB at 3M customers)."""
    return conn.query_in("select lower(s.email) as email, x.customer_key from staging.customers s "
                         "join core.customer_crosswalk x on x.record_id = s.record_id "
                         "where lower(s.email) in ({values})", emails)


def _carried_through_merges(conn: Sql, entries: pd.DataFrame) -> pd.DataFrame:
    """Entries for the customer a listed person now belongs to: an identity merge moves a person
    to a new customer_key (crosswalk `previous_customer_key`) and may pick another address for
    the golden record; the entry follows the person, by key, so the merge cannot resubscribe."""
    if entries.empty or not conn.table_exists("core", "customer_crosswalk"):
        return _frame([])
    cols = column_types(conn, "core", "customer_crosswalk")
    links = []
    if "previous_customer_key" in cols:
        links.append(conn.query("select previous_customer_key as old_key, customer_key from core.customer_crosswalk "
                                "where previous_customer_key is not null and previous_customer_key <> customer_key"))
    live = entries[entries["reason"].isin(LIFTABLE)]  # the person's will; a bounce is about one address
    if conn.table_exists("staging", "customers"):  # the address on any source record of the person
        links.append(_records_with_addresses(conn, live["email"].dropna().astype(str).unique().tolist()))
    carried = []
    for link in links:
        on = "old_key" if "old_key" in link else "email"
        left = live.rename(columns={"customer_key": "old_key"}) if on == "old_key" else live.drop(columns=["customer_key"])
        hit = left.merge(link, on=on)
        if on == "old_key":
            hit = hit[hit["customer_key"] != hit["old_key"]]
        carried.append(_frame(hit.drop(columns=[c for c in ("old_key",) if c in hit]).assign(
            email=None, email_sha256=None, source="identity_merge")))
    found = _concat(carried)
    known = set(zip(entries["customer_key"], entries["reason"]))
    return found[[k not in known for k in zip(found["customer_key"], found["reason"])]]


def build(conn: Sql, now: datetime) -> pd.DataFrame:
    """The new list: previous entries (sticky) plus new ones, minus those an opt-in lifted."""
    tables.prepare(conn, "suppression")
    previous = conn.query(f"select {', '.join(COLUMNS)} from activation.suppression")
    merged = _concat([previous, candidates(conn, now)])
    merged = _concat([merged, _reingested_erasures(conn, merged[merged["reason"] == "erased"]),
                      _carried_through_merges(conn, merged)])
    merged["recorded_at"] = pd.to_datetime(merged["recorded_at"], utc=True)
    opt_in = _latest_opt_ins(conn)
    latest = pd.to_datetime(merged["email"].map(opt_in), utc=True)
    lifted = merged["reason"].isin(LIFTABLE) & latest.notna() & (latest > merged["recorded_at"])
    kept = merged[~lifted].sort_values("recorded_at", kind="stable")
    key = kept[["email", "customer_key", "reason", "email_sha256"]].fillna("")
    kept = kept[~key.duplicated(keep="first")]
    return kept.reset_index(drop=True)


def write(conn, frame: pd.DataFrame) -> None:
    tables.prepare(conn, "suppression")
    with conn.transaction():
        conn.replace_frame("activation", "suppression", frame.reindex(columns=COLUMNS))


def add_erased(conn, hashes: list[str], now: datetime) -> None:
    """Record erased people by hashed address only (called inside `forget`'s transaction)."""
    if not hashes:
        return
    frame = pd.DataFrame({"email": None, "customer_key": None, "reason": "erased", "source": "erasure",
                          "recorded_at": pd.Timestamp(now), "email_sha256": hashes}).reindex(columns=COLUMNS)
    frame["email"] = frame["email"].astype(object)
    frame["customer_key"] = frame["customer_key"].astype(object)
    conn.insert_frame("activation", "suppression", frame)


# -- propagation: every unsubscribe must reach every destination that holds an audience ----------
def request_propagation(conn: Sql, destinations: list[str]) -> None:
    """One pending row per (listed address, destination), timed from the unsubscribe itself."""
    tables.prepare(conn, "suppression", "suppression_propagation")
    conn.execute("delete from activation.suppression_propagation where propagated_at is null and not exists "
                 "(select 1 from activation.suppression s where s.email = suppression_propagation.email)")
    for name in destinations:
        conn.execute("""insert into activation.suppression_propagation (email, destination, requested_at, propagated_at)
select s.email, ?, min(s.recorded_at), null from activation.suppression s
where s.email is not null and not exists (select 1 from activation.suppression_propagation p
                                          where p.email = s.email and p.destination = ?)
group by s.email""", [name, name])


def propagate(conn, destination: Destination, now: datetime) -> tuple[int, int]:
    """Send pending unsubscribes to one destination; returns (propagated, failed)."""
    pending = conn.query("""select p.email, min(s.customer_key) as customer_key
from activation.suppression_propagation p left join activation.suppression s on s.email = p.email
where p.destination = ? and p.propagated_at is null group by p.email order by p.email""", [destination.name])
    done = failed = 0
    for start in range(0, len(pending), destination.batch_size):
        chunk = pending.iloc[start:start + destination.batch_size]
        rows = [SyncRow(row_key=f"unsubscribe|{r.email}", customer_key=r.customer_key, email=r.email, op=UNSUBSCRIBE,
                        segment="suppression", idempotency_key=hashlib.sha256(f"{destination.name}|unsub|{r.email}".encode()).hexdigest()[:32])
                for r in chunk.itertuples(index=False)]
        results = destination.send(rows, hashlib.sha256("|".join(r.idempotency_key for r in rows).encode()).hexdigest()[:32])
        ok = [row.email for row, res in zip(rows, results) if res.ok]
        failed += len(rows) - len(ok)
        if ok:
            marks = ", ".join("?" for _ in ok)
            with conn.transaction():
                conn.execute(f"update activation.suppression_propagation set propagated_at = ? where destination = ? "
                             f"and propagated_at is null and email in ({marks})", [now, destination.name, *ok])
            done += len(ok)
    return done, failed


def unpropagated(conn: Sql, destinations: list[str], now: datetime,
                 max_age: timedelta = PROPAGATION_MAX_AGE) -> pd.DataFrame:
    """Unsubscribes older than `max_age` that have not reached every destination (email,
    destination, requested_at); a destination never asked counts as not reached."""
    if not conn.table_exists("activation", "suppression") or not destinations:
        return pd.DataFrame(columns=["email", "destination", "requested_at"])
    tables.prepare(conn, "suppression_propagation")
    values = " union all ".join("select ? as destination" for _ in destinations)
    return conn.query(f"""select s.email, d.destination, min(s.recorded_at) as requested_at
from activation.suppression s cross join ({values}) d
where s.email is not null and s.recorded_at < ?
  and not exists (select 1 from activation.suppression_propagation p where p.email = s.email
                  and p.destination = d.destination and p.propagated_at is not null)
group by s.email, d.destination order by requested_at, s.email""", [*destinations, now - max_age])
