"""The trigger engine's guard store, filled from the warehouse.

Per tracked `userId`: the golden record's opt-in, consent and time zone, whether the person is on
the suppression list or unsubscribed, bounced or complained through an e-mail platform, and their
latest purchase (any channel that reaches the warehouse). The engine reads this right before a fire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from ..marts.inputs import SUPPRESSING_TYPES, InputTables, Sql, input_ctes, sql_list

GUARD_SELECT = f"""
, c_unsubscribed as (
    select customer_key from c_suppression where customer_key is not null
    union select c.customer_key from c_suppression s join c_customers c on c.email = s.email
    union select customer_key from c_email
          where type in ({sql_list(tuple(SUPPRESSING_TYPES))}) and customer_key is not null
),
c_last_purchase as (
    select customer_key, max(created_at) as last_purchase_at from c_orders group by customer_key
)
select m.identity as customer_id, coalesce(c.email_opt_in, false) as email_opt_in,
       coalesce(c.consent_processing, false) as consent_processing,
       u.customer_key is not null as unsubscribed, p.last_purchase_at, c.timezone
from {{identity_map}} m
join c_customers c on c.customer_key = m.customer_key
left join (select distinct customer_key from c_unsubscribed) u on u.customer_key = c.customer_key
left join c_last_purchase p on p.customer_key = c.customer_key
where m.identity_type = 'user_id'
order by customer_id
"""


GUARD_COLUMNS = ["customer_id", "email_opt_in", "consent_processing", "unsubscribed", "last_purchase_at", "timezone"]


def guard_sql(conn: Sql, tables: InputTables = InputTables()) -> str:
    """The query of one row per tracked userId: `GUARD_COLUMNS` (last_purchase_at in UTC)."""
    return input_ctes(conn, tables) + GUARD_SELECT.format(identity_map=tables.identity_map)


@dataclass
class GuardTally:
    """What a guard copy streamed a chunk at a time adds up to: rows, unsubscribed, sendable (opted
    in, consenting, not unsubscribed), and the first rows as a sample for the preview."""
    rows: int = 0
    unsubscribed: int = 0
    sendable: int = 0
    sample: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=GUARD_COLUMNS))

    def rows_of(self, frame: pd.DataFrame) -> list[tuple]:
        """`frame`'s `guard_rows`, counted."""
        if not self.rows:
            self.sample = frame.head(SAMPLE_ROWS)
        self.rows += len(frame)
        if len(frame):
            self.unsubscribed += int(frame["unsubscribed"].sum())
            self.sendable += int((frame["email_opt_in"] & frame["consent_processing"] & ~frame["unsubscribed"]).sum())
        return guard_rows(frame)


SAMPLE_ROWS = 10


def guard_rows(frame: pd.DataFrame) -> list[tuple]:
    """`guard_sql`'s rows of `frame` as `SqliteGuardProvider.sync` takes them."""
    def when(value) -> datetime | None:
        if value is None or pd.isna(value):
            return None
        stamp = pd.Timestamp(value)
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()

    return [(str(r.customer_id), bool(r.email_opt_in), bool(r.consent_processing), bool(r.unsubscribed),
             when(r.last_purchase_at), r.timezone if isinstance(r.timezone, str) else None)
            for r in frame.itertuples(index=False)]
