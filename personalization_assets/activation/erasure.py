"""Erase a person everywhere (GDPR art. 17), with proof.

`forget(conn, identifier, pii_tables)`:
1. resolves every identifier of the person through the identity tables (customer keys, source
   record ids, e-mail addresses as cleaned and as received, phones, tracked user and anonymous ids);
2. deletes every row that holds one of them from every table holding personal data. The tables
   come from PII tags (asset tag `pii` and column tags; the Dagster layer derives the list from the
   asset specs), and the identity tables it resolved through. A text column matches on equality,
   and long identifiers are also searched inside text (JSON payloads);
3. queues a deletion for every destination that received the person (`activation.erasure_queue`,
   worked off by `process_erasure_queue`, which then blanks the identifiers it held);
4. re-runs the same search on every table to verify that nothing remains;
5. writes a receipt to `compliance.erasure_ledger` (hashes and counts only);
6. lists the SHA-256 of each address on the suppression list, so a re-import is never mailed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

from ..marts.inputs import Sql
from ..resources.warehouse import identifier as safe
from . import suppression, tables
from .model import Destination

MIN_SEARCH_LENGTH = 8  # shorter identifiers (numeric CRM ids) match whole values only
TEXT_TYPES = ("varchar", "text", "string", "json", "character varying")
IDENTITY_TABLES = (("core", "customers", ("customer_key",)), ("core", "customer_crosswalk", ("record_id", "customer_key")),
                   ("core", "identity_map", ("identity", "customer_key")))


@dataclass(frozen=True)
class PiiTable:
    schema: str
    table: str
    columns: tuple[str, ...] = ()  # empty: every text column of the table

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass
class Identifiers:
    customer_keys: set[str] = field(default_factory=set)
    record_ids: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    user_ids: set[str] = field(default_factory=set)
    anonymous_ids: set[str] = field(default_factory=set)

    def values(self) -> set[str]:
        return {v.strip().lower() for group in (self.customer_keys, self.record_ids, self.emails, self.phones,
                                                self.user_ids, self.anonymous_ids) for v in group if v and v.strip()}

    def needles(self) -> set[str]:
        """Substrings searched inside text: long identifiers, and short user ids as JSON fields."""
        found = {v for v in self.values() if len(v) >= MIN_SEARCH_LENGTH}
        for uid in self.user_ids:
            for name in ("userid", "user_id"):
                found |= {f'"{name}": "{uid.lower()}"', f'"{name}":"{uid.lower()}"'}
        return found


def _in(values: Sequence[str]) -> str:
    return ", ".join("?" for _ in values) or "null"


def _lookup(conn: Sql, sql: str, params: list) -> set[str]:
    return {str(v) for v in conn.query(sql, params).iloc[:, 0] if v is not None and str(v) != "nan"} if params else set()


def _has(conn: Sql, schema: str, table: str, column: str | None = None) -> bool:
    if not conn.table_exists(schema, table):
        return False
    return column is None or column in _text_columns(conn, schema, table) | _all_columns(conn, schema, table)


def _all_columns(conn: Sql, schema: str, table: str) -> set[str]:
    return set(conn.query("select lower(column_name) as c from information_schema.columns where lower(table_schema) = "
                          "lower(?) and lower(table_name) = lower(?)", [schema, table])["c"])


def _text_columns(conn: Sql, schema: str, table: str) -> set[str]:
    frame = conn.query("select lower(column_name) as c, lower(data_type) as t from information_schema.columns "
                       "where lower(table_schema) = lower(?) and lower(table_name) = lower(?)", [schema, table])
    return {c for c, t in zip(frame["c"], frame["t"]) if t.startswith(TEXT_TYPES)}


def resolve(conn: Sql, identifier: str) -> Identifiers:
    """Every identifier of the person `identifier` names (an e-mail, customer key, record id or
    tracked user/anonymous id), following the identity tables to a fixed point."""
    ident = identifier.strip()
    ids = Identifiers()
    if "@" in ident:
        ids.emails.add(ident.lower())
    seeds = {ident, ident.lower()}
    for _ in range(3):  # keys -> records -> addresses -> keys: a few rounds reach the fixed point
        s = sorted(seeds | ids.values())
        before = len(ids.values())
        if _has(conn, "core", "customers"):
            ids.customer_keys |= _lookup(conn, f"select customer_key from core.customers where lower(customer_key) in ({_in(s)}) "
                                               f"or lower(email) in ({_in(s)})", s + s)
        if _has(conn, "core", "customer_crosswalk"):
            ids.customer_keys |= _lookup(conn, f"select customer_key from core.customer_crosswalk where lower(record_id) in ({_in(s)})", s)
            ks = sorted(ids.customer_keys)
            ids.record_ids |= _lookup(conn, f"select record_id from core.customer_crosswalk where customer_key in ({_in(ks)})", ks)
            if _has(conn, "core", "customer_crosswalk", "previous_customer_key"):
                ids.customer_keys |= _lookup(conn, "select previous_customer_key from core.customer_crosswalk "
                                                   f"where customer_key in ({_in(ks)})", ks)
        if _has(conn, "core", "identity_map"):
            ids.customer_keys |= _lookup(conn, f"select customer_key from core.identity_map where lower(identity) in ({_in(s)})", s)
            ks = sorted(ids.customer_keys)
            for kind, target in (("user_id", ids.user_ids), ("anonymous_id", ids.anonymous_ids)):
                target |= _lookup(conn, f"select identity from core.identity_map where identity_type = ? "
                                        f"and customer_key in ({_in(ks)})", [kind, *ks])
        ks = sorted(ids.customer_keys)
        if _has(conn, "core", "customers"):
            ids.emails |= {e.lower() for e in _lookup(conn, f"select email from core.customers where customer_key in ({_in(ks)})", ks)}
            if _has(conn, "core", "customers", "phone"):
                ids.phones |= _lookup(conn, f"select phone from core.customers where customer_key in ({_in(ks)})", ks)
        if _has(conn, "staging", "customers"):
            rs, es = sorted(ids.record_ids), sorted(ids.emails)
            ids.record_ids |= _lookup(conn, f"select record_id from staging.customers where lower(email) in ({_in(es)})", es)
            rs = sorted(ids.record_ids)
            for col, target in (("email", ids.emails), ("email_raw", ids.emails), ("phone", ids.phones), ("phone_raw", ids.phones)):
                if _has(conn, "staging", "customers", col):
                    target |= {v.strip() for v in _lookup(conn, f"select {col} from staging.customers where record_id in ({_in(rs)})", rs)}
        ids.emails = {e.strip().lower() for e in ids.emails}
        if len(ids.values()) == before:
            break
    return ids


def _predicate(columns: Sequence[str], values: list[str], needles: list[str]) -> tuple[str, list]:
    parts, params = [], []
    for c in columns:
        col = f"lower(cast({safe(c)} as varchar))"
        parts.append(f"{col} in ({_in(values)})")
        params += values
        for n in needles:
            parts.append(f"strpos({col}, ?) > 0")
            params.append(n)
    return " or ".join(parts) or "false", params


def _targets(conn: Sql, pii_tables: Sequence[PiiTable]) -> list[tuple[str, list[str]]]:
    """(table, text columns) for every listed table that exists, plus the identity tables."""
    found: dict[str, set[str]] = {}
    for t in pii_tables:
        if not conn.table_exists(t.schema, t.table):
            continue
        text = _text_columns(conn, t.schema, t.table)
        cols = text & {c.lower() for c in t.columns} if t.columns else text
        found.setdefault(f"{safe(t.schema)}.{safe(t.table)}", set()).update(cols)
    for schema, table, cols in IDENTITY_TABLES:
        if conn.table_exists(schema, table):
            found.setdefault(f"{schema}.{table}", set()).update(set(cols) & _all_columns(conn, schema, table))
    return [(name, sorted(cols)) for name, cols in sorted(found.items()) if cols]


def scan(conn: Sql, ids: Identifiers, pii_tables: Sequence[PiiTable]) -> dict[str, int]:
    """Rows per table that still hold one of the identifiers (every text column searched)."""
    values, needles = sorted(ids.values()), sorted(ids.needles())
    counts = {}
    for name, cols in _targets(conn, pii_tables):
        where, params = _predicate(cols, values, needles)
        counts[name] = int(conn.query(f"select count(*) as n from {name} where {where}", params)["n"].iloc[0])
    return counts


@dataclass
class Receipt:
    erasure_id: str
    identifiers: Identifiers
    deleted: dict[str, int]
    remaining: dict[str, int]
    destinations: list[str]

    @property
    def verified(self) -> bool:
        return not any(self.remaining.values())


def _hash(value: str) -> str:
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()


def _holding_destinations(conn: Sql, ids: Identifiers) -> set[str]:
    found: set[str] = set()
    ks, es = sorted(ids.customer_keys), sorted(ids.emails)
    if conn.table_exists("activation", "sync_state"):
        found |= _lookup(conn, f"select distinct destination from activation.sync_state where customer_key in ({_in(ks)}) "
                               f"or lower(email) in ({_in(es)})", ks + es) if (ks or es) else set()
    if conn.table_exists("activation", "suppression_propagation") and es:
        found |= _lookup(conn, f"select distinct destination from activation.suppression_propagation where email in ({_in(es)})", es)
    return found


def forget(conn, identifier: str, pii_tables: Sequence[PiiTable], destinations: Sequence[str] = (),
           now: datetime | None = None) -> Receipt:
    """Erase the person `identifier` names; returns the receipt also written to the ledger."""
    now = now or datetime.now(timezone.utc)
    ids = resolve(conn, identifier)
    if not ids.values():
        raise LookupError(f"nothing in the warehouse identifies {identifier!r}")
    erasure_id = uuid.uuid4().hex
    tables.prepare(conn, "suppression", "erasure_queue")
    tables.prepare_ledger(conn)
    queued = sorted(_holding_destinations(conn, ids) | set(destinations))
    values, needles = sorted(ids.values()), sorted(ids.needles())
    targets = _targets(conn, pii_tables)
    deleted = {}
    with conn.transaction():
        for name, cols in targets:
            where, params = _predicate(cols, values, needles)
            deleted[name] = int(conn.query(f"select count(*) as n from {name} where {where}", params)["n"].iloc[0])
            if deleted[name]:
                conn.execute(f"delete from {name} where {where}", params)
        for dest in queued:
            for email in sorted(ids.emails) or [None]:
                conn.execute("insert into activation.erasure_queue values (?, ?, ?, null, ?, null, null)",
                             [erasure_id, dest, email, now])
            for key in sorted(ids.customer_keys):
                conn.execute("insert into activation.erasure_queue values (?, ?, null, ?, ?, null, null)",
                             [erasure_id, dest, key, now])
        suppression.add_erased(conn, sorted(_hash(e) for e in ids.emails), now)
    remaining = scan(conn, ids, pii_tables)
    receipt = Receipt(erasure_id, ids, deleted, remaining, queued)
    conn.execute("insert into compliance.erasure_ledger values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        erasure_id, now, datetime.now(timezone.utc), _hash(identifier),
        json.dumps(sorted(_hash(v) for v in ids.values())), len(targets), sum(deleted.values()),
        sum(remaining.values()), json.dumps(queued), receipt.verified,
        json.dumps({"deleted": deleted, "remaining": {k: v for k, v in remaining.items() if v}})])
    return receipt


def process_erasure_queue(conn, destinations: Sequence[Destination], now: datetime | None = None) -> dict[str, int]:
    """Delete queued people at each destination; on success blank the identifiers the queue held.
    Returns people erased per destination. A destination that fails keeps its rows (error noted)."""
    if not conn.table_exists("activation", "erasure_queue"):
        return {}
    now = now or datetime.now(timezone.utc)
    done: dict[str, int] = {}
    for dest in destinations:
        pending = conn.query("select erasure_id, email, customer_key from activation.erasure_queue "
                             "where destination = ? and done_at is null", [dest.name])
        for erasure_id, rows in pending.groupby("erasure_id"):
            emails = sorted(e for e in rows["email"] if isinstance(e, str))
            keys = sorted(k for k in rows["customer_key"] if isinstance(k, str))
            try:
                dest.delete(emails, keys)
            except Exception as exc:  # noted on the queue row and retried next time, never dropped
                conn.execute("update activation.erasure_queue set error = ? where erasure_id = ? and destination = ? "
                             "and done_at is null", [f"{type(exc).__name__}: {exc}"[:500], erasure_id, dest.name])
                continue
            conn.execute("update activation.erasure_queue set done_at = ?, email = null, customer_key = null, error = null "
                         "where erasure_id = ? and destination = ? and done_at is null", [now, erasure_id, dest.name])
            done[dest.name] = done.get(dest.name, 0) + 1
    return done
