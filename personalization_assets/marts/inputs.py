"""The one place that says which warehouse tables and columns the marts read.

Every mart query starts with `input_ctes()`: small relations keyed by `customer_key` that hide how
orders and events are attributed to a customer (crosswalk, identity map, e-mail fallback for
guests). Optional inputs (e-mail events, the suppression list) may be absent or empty; they are
then replaced by an empty relation with the same columns, so the SQL stays one text.

The SQL uses only constructs that DuckDB and Snowflake share (no date arithmetic: windows are bind
parameters computed in Python).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

from ..warehouse import column_types

if TYPE_CHECKING:  # only in annotations: importing pandas costs ~0.6 s
    import pandas as pd

# Order states that are not a purchase. Events: canonical names, lower case with spaces.
NON_PURCHASE_STATUSES = ("cancelled", "canceled", "refunded", "failed", "pending")
VIEW_EVENTS = ("product viewed",)
CART_EVENTS = ("product added",)
OPEN_TYPES = ("open", "opened")
CLICK_TYPES = ("click", "clicked")
# E-mail events that suppress an address for good (webhooks of issue 11 feed these too).
SUPPRESSING_TYPES = {"bounce": "bounced", "bounced": "bounced", "hard_bounce": "bounced",
                     "complaint": "complained", "spamreport": "complained",
                     "unsubscribe": "unsubscribed", "unsubscribed": "unsubscribed",
                     "group_unsubscribe": "unsubscribed"}


class Sql(Protocol):
    """What the marts need from a warehouse connection (the `warehouse` resource provides it)."""

    dialect: str

    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame: ...
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...
    def table_exists(self, schema: str, table: str) -> bool: ...
    def query_in(self, sql: str, values: Iterable[Any], params: Sequence[Any] = ()) -> pd.DataFrame: ...


@dataclass(frozen=True)
class InputTables:
    customers: str = "core.customers"          # customer_key, email, first_name, last_name, country,
    #   timezone, locale, email_opt_in, consent_processing, created_at, currency (optional)
    crosswalk: str = "core.customer_crosswalk"  # record_id, customer_key
    identity_map: str = "core.identity_map"     # identity_type, identity, customer_key
    orders: str = "staging.orders"              # order_id, customer_record_id, email, status,
    #   currency, total_minor, total_reporting_minor, created_at, cart_id
    order_lines: str = "staging.order_lines"    # order_id, sku, product_name, category, quantity,
    #   unit_price_minor, line_total_minor, currency
    events: str = "staging.events"              # type, event, user_id, anonymous_id, timestamp,
    #   cart_id, sku, category, currency, value_minor
    email_events: str = "staging.email_events"  # provider, provider_event_id, type, email,
    #   customer_key, timestamp, is_machine                                 (optional)
    suppression: str = "activation.suppression"  # email, customer_key, reason       (optional)


OPTIONAL_EMPTY = {
    "email_events": "select cast(null as varchar) as provider, cast(null as varchar) as provider_event_id, "
                    "cast(null as varchar) as type, cast(null as varchar) as email, "
                    "cast(null as varchar) as customer_key, cast(null as timestamp) as timestamp, "
                    "cast(null as boolean) as is_machine where 1 = 0",
    "suppression": "select cast(null as varchar) as email, cast(null as varchar) as customer_key, "
                   "cast(null as varchar) as reason where 1 = 0",
}


# Columns the contract promises but an older staging may lack: (table field, column) -> fallback.
FALLBACKS = {
    ("orders", "total_reporting_minor"): "o.total_minor",
    ("orders", "fx_rate"): "cast(null as double)",
    ("order_lines", "line_total_minor"): "l.unit_price_minor * l.quantity",
    ("events", "value_minor"): "cast(null as bigint)",
    ("events", "currency"): "cast(null as varchar)",
    ("customers", "created_at"): "cast(null as timestamp)",
}


def sql_list(values: Sequence[str]) -> str:
    """Inline a tuple of trusted code constants (never user data) as a SQL list."""
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _source(conn: Sql, tables: InputTables, name: str) -> str:
    table = getattr(tables, name)
    if name in OPTIONAL_EMPTY:
        schema, _, bare = table.partition(".")
        if not conn.table_exists(schema, bare):
            return f"({OPTIONAL_EMPTY[name]})"
    return table


def column(conn: Sql, tables: InputTables, name: str, col: str, alias: str) -> str:
    """`alias.col`, or its documented fallback when the table lacks the column."""
    schema, _, table = getattr(tables, name).partition(".")
    if (name, col) in FALLBACKS and col not in column_types(conn, schema, table):
        return FALLBACKS[(name, col)]
    return f"{alias}.{col}"


def input_ctes(conn: Sql, tables: InputTables = InputTables()) -> str:
    """`with` clause defining c_customers, c_orders, c_lines, c_events, c_email, c_suppression."""
    t = {f.name: _source(conn, tables, f.name) for f in fields(tables)}
    col = lambda name, c, alias: column(conn, tables, name, c, alias)  # noqa: E731
    return f"""with
c_customers as (
    select c.customer_key, c.email, c.first_name, c.last_name, c.country, c.timezone, c.locale,
           c.email_opt_in, c.consent_processing, {col('customers', 'created_at', 'c')} as created_at
    from {t['customers']} c
),
c_email_keys as (
    select email, min(customer_key) as customer_key from c_customers
    where email is not null group by email
),
c_orders as (
    select coalesce(x.customer_key, g.customer_key) as customer_key, o.order_id, o.created_at,
           {col('orders', 'total_reporting_minor', 'o')} as value_minor, o.currency, o.cart_id
    from {t['orders']} o
    left join {t['crosswalk']} x on x.record_id = o.customer_record_id
    left join c_email_keys g on o.customer_record_id is null and g.email = o.email
    where coalesce(lower(o.status), '') not in ({sql_list(NON_PURCHASE_STATUSES)})
),
c_lines as (
    select o.customer_key, o.order_id, o.created_at, l.sku, l.product_name, l.category,
           l.quantity, l.unit_price_minor,
           {col('order_lines', 'line_total_minor', 'l')} as line_total_minor, l.currency
    from {t['order_lines']} l join c_orders o on o.order_id = l.order_id
),
c_events as (
    select coalesce(mu.customer_key, ma.customer_key) as customer_key,
           lower(replace(e.event, '_', ' ')) as event, e.timestamp as ts, e.cart_id, e.sku,
           e.category, {col('events', 'currency', 'e')} as currency,
           {col('events', 'value_minor', 'e')} as value_minor
    from {t['events']} e
    left join {t['identity_map']} mu on mu.identity_type = 'user_id' and mu.identity = e.user_id
    left join {t['identity_map']} ma on ma.identity_type = 'anonymous_id'
                                     and ma.identity = e.anonymous_id
    where lower(replace(e.event, '_', ' ')) in ({sql_list(VIEW_EVENTS + CART_EVENTS)})
),
c_email as (
    select coalesce(m.customer_key, g.customer_key) as customer_key, lower(m.type) as type,
           m.timestamp as ts, coalesce(m.is_machine, false) as is_machine, m.email
    from {t['email_events']} m left join c_email_keys g on g.email = m.email
),
c_suppression as (
    select email, customer_key, lower(reason) as reason from {t['suppression']}
)
"""
