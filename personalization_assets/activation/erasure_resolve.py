"""Who is being erased: every identifier of one person, found through the identity graph only.

Their golden customer(s) and its crosswalk records (with the source ids, addresses and phones on
them), their tracked user and anonymous ids from the identity map, their orders and events. A
value another customer also holds (a shared phone, a family address) is marked shared: it is
never used to delete anything, and the residual search does not look for it.
"""

from __future__ import annotations

from typing import Sequence

from ..marts.inputs import Sql
from ..warehouse import column_types
from .erasure_match import Identifiers


def marks(values: Sequence) -> str:
    return ", ".join("?" for _ in values) or "null"


def column_values(conn: Sql, sql: str, params: list) -> set[str]:
    return {str(v).strip() for v in conn.query(sql, params).iloc[:, 0] if v is not None and str(v) not in ("nan", "<NA>", "")}


def _has(conn: Sql, schema: str, table: str, *columns: str) -> bool:
    return conn.table_exists(schema, table) and set(columns) <= set(column_types(conn, schema, table))


def _select(conn: Sql, table: str, column: str, where_column: str, values: set[str], lower: bool = True) -> set[str]:
    """`column` of the rows whose `where_column` is one of `values` (compared lower-cased)."""
    schema, name = table.split(".")
    if not values or not _has(conn, schema, name, column, where_column):
        return set()
    vs = sorted(v.lower() for v in values) if lower else sorted(values)
    return column_values(conn, f"select {column} from {table} where lower(cast({where_column} as varchar)) in ({marks(vs)})", vs)


def _graph(conn: Sql, ident: str) -> tuple[set[str], set[str]]:
    """The golden customer keys and source records the identifier names."""
    one = {ident.lower()}
    keys = _select(conn, "core.customers", "customer_key", "customer_key", one)
    by_address = _select(conn, "core.customers", "customer_key", "email", one)
    by_address |= _select(conn, "core.customers", "customer_key", "email_key", one)
    if len(by_address) > 1:  # a family address: which of them asks is not ours to guess
        raise LookupError(f"{ident!r} is the address of {len(by_address)} customers ({', '.join(sorted(by_address))}): "
                          "name the customer key of the person to erase")
    keys |= by_address
    for column in ("record_id", "customer_key", "previous_customer_key"):
        keys |= _select(conn, "core.customer_crosswalk", "customer_key", column, one)
    keys |= _select(conn, "core.identity_map", "customer_key", "identity", one)
    records = _select(conn, "staging.customers", "record_id", "record_id", one)
    if not keys and "@" in ident:
        records |= _select(conn, "staging.customers", "record_id", "email", one)
    keys |= _select(conn, "core.customer_crosswalk", "customer_key", "record_id", records)
    keys |= _select(conn, "core.customer_crosswalk", "previous_customer_key", "customer_key", keys)
    records |= _select(conn, "core.customer_crosswalk", "record_id", "customer_key", keys)
    return keys, records


def resolve(conn: Sql, identifier: str) -> Identifiers:
    """Every identifier of the person `identifier` names (an e-mail, customer key, record id or
    tracked user/anonymous id), following the identity graph, never a shared attribute."""
    ident = identifier.strip()
    keys, records = _graph(conn, ident)
    ids = Identifiers(customer_keys=keys, record_ids=records)
    if "@" in ident:
        ids.emails.add(ident.lower())
    if not keys and not records:  # a tracked id the identity map has not linked (yet)
        for column in ("user_id", "anonymous_id"):
            if _select(conn, "staging.events", column, column, {ident}):
                getattr(ids, f"{column}s").add(ident)
    for kind, target in (("user_id", ids.user_ids), ("anonymous_id", ids.anonymous_ids)):
        if _has(conn, "core", "identity_map", "identity_type"):
            ks = sorted(keys)
            target |= column_values(conn, f"select identity from core.identity_map where identity_type = ? "
                                    f"and customer_key in ({marks(ks)})", [kind, *ks]) if ks else set()
    for column in ("email", "email_key"):
        ids.emails |= _select(conn, "core.customers", column, "customer_key", keys)
    ids.phones |= _select(conn, "core.customers", "phone", "customer_key", keys)
    for column, target in (("email", ids.emails), ("email_raw", ids.emails), ("email_key", ids.emails),
                           ("phone", ids.phones), ("phone_raw", ids.phones), ("source_id", ids.source_ids)):
        target |= _select(conn, "staging.customers", column, "record_id", records)
    ids.source_ids |= {r.split(":", 1)[1] for r in records if r.startswith("crm:")}
    for column, target in (("email", ids.emails), ("phone", ids.phones)):
        target |= _select(conn, "raw.crm_customers", column, "customer_id", ids.source_ids)
    ids.emails = {e.strip().lower() for e in ids.emails}
    _mark_shared(conn, ids)
    own = ids.kind("emails")
    ids.order_ids |= _select(conn, "staging.orders", "order_id", "customer_record_id", records)
    ids.order_ids |= _select(conn, "staging.orders", "order_id", "email", own)
    ids.order_ids |= _select(conn, "raw.shop_orders", "order_id", "customer_id", ids.source_ids)
    ids.order_ids |= _select(conn, "raw.shop_orders", "order_id", "email", own)
    ids.message_ids |= _select(conn, "staging.events", "message_id", "user_id", ids.user_ids)
    ids.message_ids |= _select(conn, "staging.events", "message_id", "anonymous_id", ids.anonymous_ids)
    return ids


def _mark_shared(conn: Sql, ids: Identifiers) -> None:
    """Addresses and phones that a customer outside the person's graph also holds."""
    keys, records = sorted(ids.customer_keys), sorted(ids.record_ids)
    for table, key_column, mine, checks in (
            ("core.customers", "customer_key", keys, (("email", "emails"), ("email_key", "emails"), ("phone", "phones"))),
            ("staging.customers", "record_id", records, (("email", "emails"), ("email_raw", "emails"),
                                                         ("phone", "phones"), ("phone_raw", "phones")))):
        schema, name = table.split(".")
        for column, kind in checks:
            values = sorted({v.lower() for v in getattr(ids, kind)})
            if not values or not _has(conn, schema, name, column, key_column):
                continue
            others = f"{key_column} not in ({marks(mine)})" if mine else "true"
            shared = column_values(conn, f"select distinct lower({column}) from {table} where lower({column}) in ({marks(values)}) "
                                   f"and {others}", values + list(mine))
            getattr(ids, f"shared_{kind}").update(shared)
