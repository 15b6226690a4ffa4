"""Identity merges and unmerges, carried to a destination before its sync.

A merge gives two people one golden customer_key; the key that lost no longer exists in the
marts. Left alone, a mirror sync would only drop the old key from its segments, so the
destination would keep two profiles of one person (and upsert would keep both forever). An
unmerge (a false merge undone, `personalization identity unlink`) splits one key into several.

Per destination, the keys it holds (`activation.sync_state`, profile rows: row_key =
customer_key) are traced through the crosswalk: each record's `previous_customer_key` (the last
identity run) and the key a record would have been born with (`identity.keys.key_for`, which
survives any number of runs) lead from an old key to today's keys. Then:

- a held key that is gone and leads to one key is a **merge**: the destination merges the
  profile into the survivor (`merge_profiles`: Braze `/users/merge`, the webhook's
  `identity.merge`), or, without such a call, deletes it (never by an address the survivor
  uses); its state rows move to the survivor, so the next diff sends only what differs and
  never re-adds the person;
- a held key whose records now lie in several keys is an **unmerge**: the destination is told
  (`unmerge_profiles`: the webhook's `identity.unmerge`); without that call a profile whose key
  is gone is deleted there (Braze). The new keys are added by the ordinary diff.

Each change is recorded in `activation.identity_changes` once it is acknowledged, so a re-run
sends nothing. A destination that refuses raises: the sync stops before its diff, which would
otherwise drop the old profile from its segments and leave it behind, and the next run retries.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping

import pandas as pd

from ..marts.inputs import Sql
from ..warehouse import column_types
from . import tables

MERGE, UNMERGE = "merge", "unmerge"
STATE, LOG = "activation.sync_state", "activation.identity_changes"


@dataclass(frozen=True)
class IdentityChange:
    kind: str  # merge | unmerge
    old_key: str
    new_keys: tuple[str, ...]  # merge: the survivor; unmerge: every key the records went to
    # A gone key's state version at the destination: linked, unlinked and linked again, the second
    # merge is a new change (the key was re-added in between, at a higher version).
    generation: int = 0

    @property
    def change_id(self) -> str:
        """Stable across runs: the receiver's idempotency key and the log's key."""
        text = f"{self.kind}|{self.old_key}|{','.join(self.new_keys)}|{self.generation}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def derive_changes(held: Mapping[str, int], current: set[str],
                   lineage: Iterable[tuple[str, str]]) -> list[IdentityChange]:
    """Changes for the keys a destination holds (key -> state version). `current`: keys that exist
    now among the keys traced; `lineage`: (old key, key now) pairs from the crosswalk. A gone key
    with no lineage (its records were erased) is left to the ordinary sync."""
    leads: dict[str, set[str]] = defaultdict(set)
    for old, new in lineage:
        if old and new and old != new:
            leads[old].add(new)
    changes = []
    for key in sorted(held):
        others = leads.get(key, set())
        if not others:
            continue
        if key in current:
            changes.append(IdentityChange(UNMERGE, key, tuple(sorted(others | {key}))))
        elif len(others) == 1:
            changes.append(IdentityChange(MERGE, key, tuple(others), int(held[key])))
        else:
            changes.append(IdentityChange(UNMERGE, key, tuple(sorted(others)), int(held[key])))
    return changes


BORN_KEY = "'cus_' || substr(sha1(c.record_id), 1, 16)"  # identity.keys.key_for; sha1 hex is lower case


def _traced(conn: Sql, destination: str) -> tuple[dict[str, int], set[str], list[tuple[str, str]]]:
    """(held keys, which of them exist now, lineage pairs) for one destination, from SQL. The born
    key traces only keys that are gone: for a live key it would replay splits of long ago."""
    held_sql = (f"select customer_key as k, max(version) as v from {STATE} where destination = ? and present "
                "and row_key = customer_key group by customer_key")
    columns = column_types(conn, "core", "customer_crosswalk")
    sources = [f"select {BORN_KEY} as old_key, c.customer_key as new_key, 'born' as via from core.customer_crosswalk c"]
    if "previous_customer_key" in columns:
        sources.append("select c.previous_customer_key, c.customer_key, 'previous' from core.customer_crosswalk c "
                       "where c.previous_customer_key is not null")
    pairs = conn.query(f"""with held as ({held_sql}), lineage as ({' union all '.join(sources)}),
live as (select distinct customer_key as k from core.customer_crosswalk)
select distinct l.old_key, l.new_key, h.v as version, x.k is not null as old_exists
from lineage l join held h on h.k = l.old_key left join live x on x.k = l.old_key
where l.new_key <> l.old_key and (x.k is null or l.via = 'previous')""", [destination])
    current = set(pairs.loc[pairs["old_exists"].astype(bool), "old_key"])
    held = dict(zip(pairs["old_key"], pairs["version"].astype("int64")))
    return held, current, list(zip(pairs["old_key"], pairs["new_key"]))


def pending_changes(conn: Sql, destination: str) -> list[IdentityChange]:
    """The changes this destination has not acknowledged yet."""
    if not conn.table_exists("core", "customer_crosswalk"):
        return []
    tables.prepare(conn, "sync_state", "identity_changes")
    held, current, lineage = _traced(conn, destination)
    changes = derive_changes(held, current, lineage)
    if not changes:
        return []
    done = set(conn.query(f"select change_id from {LOG} where destination = ?", [destination])["change_id"])
    return [c for c in changes if c.change_id not in done]


def _state_moves(conn: Sql, destination: str, gone: list[IdentityChange], now: datetime) -> pd.DataFrame:
    """New sync_state rows after changes whose old key is gone: its profile rows become
    tombstones (email dropped); on a merge, a segment the survivor was not in (as far as this
    destination knows) gets the old row under the survivor's key: the merged profile holds it."""
    survivor = {c.old_key: c.new_keys[0] for c in gone if c.kind == MERGE}
    keys = sorted({c.old_key for c in gone} | set(survivor.values()))
    marks = ", ".join("?" for _ in keys)
    rows = conn.query(f"select * from {STATE} where destination = ? and row_key in ({marks}) and row_key = customer_key",
                      [destination, *keys])
    old = rows[rows["row_key"].isin({c.old_key for c in gone})]
    live = set(zip(rows.loc[rows["present"].astype(bool), "segment"], rows.loc[rows["present"].astype(bool), "row_key"]))
    versions = dict(zip(zip(rows["segment"], rows["row_key"]), rows["version"]))
    moved = old[old["present"].astype(bool) & old["row_key"].isin(survivor)].copy()
    moved["row_key"] = moved["customer_key"] = moved["row_key"].map(survivor)
    moved = moved[pd.Series([(s, k) not in live for s, k in zip(moved["segment"], moved["row_key"])],
                            index=moved.index, dtype=bool)]
    moved = moved.drop_duplicates(["segment", "row_key"])  # two people merged into one survivor
    moved["version"] = [int(versions.get((s, k), 0)) for s, k in zip(moved["segment"], moved["row_key"])]
    frame = pd.concat([old.assign(present=False, email=None), moved], ignore_index=True) if len(moved) else \
        old.assign(present=False, email=None)
    frame["version"] = frame["version"].astype("int64")
    frame["present"] = frame["present"].astype(bool)
    frame["synced_at"] = pd.Timestamp(now)
    return frame


def _held_emails(conn: Sql, destination: str, key: str, keep: tuple[str, ...]) -> list[str]:
    """The old key's addresses that no surviving key uses, here or in the profiles about to be
    synced: deleting by address (Mailchimp deletes permanently) must never hit the survivor."""
    marks = ", ".join("?" for _ in keep)
    profiles = ""
    params = [destination, key, *keep]
    if conn.table_exists("marts", "customer_profiles"):
        profiles = (f"\n  and not exists (select 1 from marts.customer_profiles p where p.customer_key in ({marks}) "
                    "and lower(p.email) = lower(s.email))")
        params += list(keep)
    found = conn.query(f"""select distinct lower(s.email) as email from {STATE} s
where s.destination = ? and s.customer_key = ? and s.email is not null
  and not exists (select 1 from {STATE} o where o.destination = s.destination and o.present
                  and o.customer_key in ({marks}) and lower(o.email) = lower(s.email)){profiles}""", params)
    return sorted(found["email"])


def apply_changes(conn: Sql, destination, changes: list[IdentityChange], now: datetime,
                  chunk: int = 1000) -> dict[str, int]:
    """Per chunk of changes: tell the destination, then move its state and log the changes in
    one transaction. Nothing is logged before the destination acknowledged it, so a failure
    leaves changes pending (re-sent with the same idempotency keys), never half done."""
    merge_call = getattr(destination, "merge_profiles", None)
    unmerge_call = getattr(destination, "unmerge_profiles", None)
    counts = {"merged": 0, "unmerged": 0, "deleted": 0}
    for start in range(0, len(changes), chunk):
        part = changes[start:start + chunk]
        merges, unmerges = [c for c in part if c.kind == MERGE], [c for c in part if c.kind == UNMERGE]
        if merges and merge_call:
            merge_call(merges)
        if unmerges and unmerge_call:
            unmerge_call(unmerges)
        gone = [c for c in part if c.old_key not in c.new_keys]
        for change in gone:
            if not (merge_call if change.kind == MERGE else unmerge_call):  # it cannot merge or split
                destination.delete(_held_emails(conn, destination.name, change.old_key, change.new_keys),
                                   [change.old_key])
                counts["deleted"] += 1
        state = _state_moves(conn, destination.name, gone, now) if gone else None
        log = pd.DataFrame({"destination": destination.name, "change_id": [c.change_id for c in part],
                            "kind": [c.kind for c in part], "old_key": [c.old_key for c in part],
                            "new_keys": [",".join(c.new_keys) for c in part], "applied_at": pd.Timestamp(now)})
        with conn.transaction():
            if state is not None and len(state):
                conn.upsert_frame("activation", "sync_state", state, ["destination", "segment", "row_key"])
            conn.upsert_frame("activation", "identity_changes", log, ["destination", "change_id"])
        counts["merged"] += len(merges)
        counts["unmerged"] += len(unmerges)
    return counts


def propagate_identity_changes(conn: Sql, destination, now: datetime) -> dict[str, int]:
    """Carry pending merges and unmerges to one destination; returns counts by outcome."""
    return apply_changes(conn, destination, pending_changes(conn, destination.name), now)
