"""Erase one person everywhere (GDPR art. 17), exactly, with proof.

`forget(conn, identifier, pii_tables, stores=...)`:
1. resolves the person through the identity graph only: their golden customer(s), its crosswalk
   records (and the source ids, addresses and phones on them), their tracked user and anonymous ids
   from the identity map, their orders and events. A value another customer also holds (a shared
   phone, a family address) is marked shared and never used to delete anything;
2. deletes the rows that belong to the person (`erasure_match`: key columns, and JSON documents
   that name them) from every table of a `pii`-tagged asset, the identity tables, and any other
   table where their identifiers turn up;
3. queues a deletion for every destination that received the person, encrypted, with a key that
   is destroyed once the destination confirmed (`erasure_queue`);
4. erases the person from the stores outside the warehouse it is given (event buses, trigger
   guard and ledger, landing files: `erasure_stores`);
5. verifies: the same ownership rules find nothing, and no text column of any table (nor any
   store) still holds one of the person's own identifiers as a whole token;
6. writes a receipt to `compliance.erasure_ledger` (hashes and counts only) and lists the SHA-256
   of each address on the suppression list (the tombstone that keeps a re-import from being mailed).

The warehouse file itself still holds the deleted bytes until it is rewritten:
`erasure_stores.rewrite_duckdb_file` does that for the embedded DuckDB warehouse.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, Sequence

from ..hashes import identifier_hash
from ..marts.inputs import Sql
from ..warehouse import identifier as safe
from . import erasure_queue, suppression, tables
from .erasure_match import OWNER_COLUMNS, Identifiers, Matcher
from ..warehouse import column_types
from .erasure_resolve import column_values, marks, resolve
from .model import Destination

__all__ = ["Identifiers", "PiiTable", "Receipt", "Store", "earlier_erasure", "forget", "process_erasure_queue", "resolve",
           "scan"]

TEXT_TYPES = ("varchar", "text", "string", "json", "character varying")
IDENTITY_TABLES = (("core", "customers"), ("core", "customer_crosswalk"), ("core", "identity_map"))
SKIPPED_SCHEMAS = ("seeds", "information_schema", "pg_catalog")
LEDGER = ("compliance", "erasure_ledger")
# The receipts (hashes only) and the pending destination deletions (encrypted: they must survive).
NEVER_ERASED = {LEDGER, ("activation", "erasure_queue")}


@dataclass(frozen=True)
class PiiTable:
    schema: str
    table: str
    columns: tuple[str, ...] = ()  # empty: every text column of the table

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


class Store(Protocol):
    """A place outside the warehouse that may hold the person (bus, guard store, landing files)."""

    name: str

    def erase(self, ids: Identifiers) -> int: ...

    def remaining(self, ids: Identifiers) -> int: ...


# -- which rows: the person's own, by key or by document --------------------------------------
@dataclass(frozen=True)
class Target:
    name: str
    owner: tuple[tuple[str, tuple[str, ...]], ...]  # (column, kinds)
    documents: tuple[str, ...]  # text columns searched as documents
    text: tuple[str, ...]  # every text column (the residual search)


def _target(conn: Sql, schema: str, table: str, only: tuple[str, ...] = ()) -> Target | None:
    cols = column_types(conn, schema, table)
    owner = tuple((c, OWNER_COLUMNS[c]) for c in sorted(cols) if c in OWNER_COLUMNS)
    text = {c for c, t in cols.items() if t.startswith(TEXT_TYPES) and c not in OWNER_COLUMNS}
    docs = tuple(sorted(text & {c.lower() for c in only} if only else text))
    all_text = tuple(sorted(c for c, t in cols.items() if t.startswith(TEXT_TYPES)))
    return Target(f"{safe(schema)}.{safe(table)}", owner, docs, all_text) if owner or all_text else None


def _all_tables(conn: Sql) -> list[tuple[str, str]]:
    frame = conn.query("select lower(table_schema) as s, lower(table_name) as t from information_schema.tables "
                       "where lower(table_type) like '%table%'")
    return [(s, t) for s, t in zip(frame["s"], frame["t"]) if s not in SKIPPED_SCHEMAS]


def _targets(conn: Sql, pii_tables: Sequence[PiiTable]) -> list[Target]:
    """Every table of a `pii` asset and the identity tables (documents narrowed to tagged columns),
    then every other table (key columns, and text columns as documents)."""
    found: dict[str, Target] = {}
    listed = [(t.schema.lower(), t.table.lower(), t.columns) for t in pii_tables]
    listed += [(s, t, ()) for s, t in IDENTITY_TABLES] + [(s, t, ()) for s, t in _all_tables(conn)]
    for schema, table, only in listed:
        if (schema, table) in NEVER_ERASED:
            continue
        if f"{schema}.{table}" not in found and conn.table_exists(schema, table):
            target = _target(conn, schema, table, only)
            if target is not None:
                found[target.name] = target
    return list(found.values())


def _owner_where(target: Target, ids: Identifiers) -> tuple[list[str], list]:
    parts, params = [], []
    for column, kinds in target.owner:
        values = sorted(set().union(*(ids.kind(k) for k in kinds)))
        for start in range(0, len(values), 1000):  # a heavy user's message ids: IN lists of bounded size
            chunk = values[start:start + 1000]
            parts.append(f"lower(cast({column} as varchar)) in ({marks(chunk)})")
            params += chunk
    return parts, params


def _documents(conn: Sql, target: Target, columns: Sequence[str], needles: list[str], test) -> dict[str, list[str]]:
    """Per column, the distinct texts that pass `test`; one SQL scan of the table first keeps the
    rows whose text columns hold a needle at all."""
    if not needles or not columns:
        return {}
    joined = f"lower(concat_ws('|', {', '.join(columns)}))"
    where = " or ".join(f"strpos({joined}, ?) > 0" for _ in needles)
    rows = conn.query(f"select {', '.join(columns)} from {target.name} where {where}", needles)
    return {c: sorted({t for t in rows[c] if isinstance(t, str) and test(t)}) for c in columns}


def _where(conn: Sql, target: Target, ids: Identifiers, matcher: Matcher, residual: bool = False) -> tuple[str, list]:
    parts, params = _owner_where(target, ids)
    needles = sorted(ids.prefilter() | (ids.searchable() if residual else set()))
    columns = target.text if residual else target.documents
    for column, texts in _documents(conn, target, columns, needles, matcher.mentions if residual else matcher.owns).items():
        for start in range(0, len(texts), 500):
            chunk = texts[start:start + 500]
            parts.append(f"{column} in ({marks(chunk)})")
            params += chunk
    return " or ".join(parts) or "false", params


def _count(conn: Sql, name: str, where: str, params: list) -> int:
    return int(conn.query(f"select count(*) as n from {name} where {where}", params)["n"].iloc[0]) if where != "false" else 0


def scan(conn: Sql, ids: Identifiers, pii_tables: Sequence[PiiTable]) -> dict[str, int]:
    """Rows per table that still belong to the person or still mention one of their own
    identifiers (a whole-token search of every text column)."""
    matcher = Matcher(ids)
    return {t.name: _count(conn, t.name, *_where(conn, t, ids, matcher, residual=True)) for t in _targets(conn, pii_tables)}


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


def _destination_people(conn: Sql, ids: Identifiers) -> tuple[set[str], set[str], set[str]]:
    """(destinations, addresses, customer keys) the destinations hold for the person."""
    ks, es = sorted(ids.kind("customer_keys")), sorted(ids.kind("emails"))
    dests, emails = set(), set(es)
    if conn.table_exists("activation", "sync_state") and (ks or es):
        held = conn.query(f"select distinct destination, lower(email) as email from activation.sync_state "
                          f"where customer_key in ({marks(ks)}) or lower(email) in ({marks(es)})", ks + es)
        dests |= set(held["destination"])
        emails |= {e for e in held["email"] if isinstance(e, str)} - ids.shared_emails
    if conn.table_exists("activation", "suppression_propagation") and es:
        dests |= column_values(conn, f"select distinct destination from activation.suppression_propagation "
                               f"where lower(email) in ({marks(es)})", es)
    return dests, emails, set(ks)


def forget(conn, identifier: str, pii_tables: Sequence[PiiTable], destinations: Sequence[str] = (),
           now: datetime | None = None, stores: Sequence[Store] = ()) -> Receipt:
    """Erase the person `identifier` names; returns the receipt also written to the ledger."""
    now = now or datetime.now(timezone.utc)
    ids = resolve(conn, identifier)
    if not ids.values():
        raise LookupError(f"nothing in the warehouse identifies {identifier!r}")
    erasure_id = uuid.uuid4().hex
    tables.prepare(conn, "suppression", "erasure_queue")
    tables.prepare_ledger(conn)
    held, emails, keys = _destination_people(conn, ids)
    queued = sorted(held | set(destinations))
    targets = _targets(conn, pii_tables)
    matcher = Matcher(ids)
    deleted = {}
    with conn.transaction():
        for target in targets:
            where, params = _where(conn, target, ids, matcher)
            deleted[target.name] = _count(conn, target.name, where, params)
            if deleted[target.name]:
                conn.execute(f"delete from {target.name} where {where}", params)
        erasure_queue.enqueue(conn, erasure_id, queued, sorted(emails), sorted(keys), now)
        suppression.add_erased(conn, sorted(identifier_hash(e) for e in ids.kind("emails")), now)
    for store in stores:
        deleted[store.name] = store.erase(ids)
    remaining = scan(conn, ids, pii_tables) | {s.name: s.remaining(ids) for s in stores}
    receipt = Receipt(erasure_id, ids, deleted, remaining, queued)
    conn.execute("insert into compliance.erasure_ledger values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        erasure_id, now, datetime.now(timezone.utc), identifier_hash(identifier),
        json.dumps(sorted(identifier_hash(v) for v in ids.values())), len(targets) + len(stores), sum(deleted.values()),
        sum(remaining.values()), json.dumps(queued), receipt.verified,
        json.dumps({"deleted": {k: v for k, v in deleted.items() if v},
                    "remaining": {k: v for k, v in remaining.items() if v},
                    "shared_values_kept": len(ids.shared_emails) + len(ids.shared_phones)})])
    return receipt


def earlier_erasure(conn: Sql, identifier: str) -> str | None:
    """The id of the latest erasure of the person this identifier named (the ledger keeps the
    hashes of every identifier it erased)."""
    if not conn.table_exists(*LEDGER):
        return None
    digest = identifier_hash(identifier)
    return conn.scalar("select erasure_id from compliance.erasure_ledger where identifier_sha256 = ? "
                       "or strpos(identifiers_sha256, ?) > 0 order by completed_at desc limit 1", [digest, digest])


def process_erasure_queue(conn, destinations: Sequence[Destination], now: datetime | None = None) -> dict[str, int]:
    """Delete queued people at each destination (see `erasure_queue.process`)."""
    return erasure_queue.process(conn, destinations, now)
