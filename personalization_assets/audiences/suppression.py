"""Who must never receive a marketing e-mail, and the proof that no sendable segment holds them.

A customer is suppressed when any of these holds: not opted in (unsubscribed), no consent for
processing, no e-mail address, on the suppression list (by customer_key or e-mail), or an e-mail
event that bounced, complained or unsubscribed. One reason per customer, the most severe first.
"""

from __future__ import annotations

import pandas as pd

from ..marts.inputs import SUPPRESSING_TYPES, InputTables, Sql, sql_list, input_ctes

REASON_ORDER = ("complained", "bounced", "unsubscribed", "no_consent", "no_email")

SUPPRESSED_CTE = f"""
c_suppressed_all as (
    select customer_key, case when not coalesce(email_opt_in, false) then 'unsubscribed' end as reason
    from c_customers
    union all
    select customer_key, case when not coalesce(consent_processing, false) then 'no_consent' end
    from c_customers
    union all
    select customer_key, case when email is null or email = '' then 'no_email' end from c_customers
    union all
    select s.customer_key, coalesce(s.reason, 'unsubscribed') from c_suppression s
    where s.customer_key is not null
    union all  -- two equi-joins, not one join on "key or email": that one is a nested loop
    select c.customer_key, coalesce(s.reason, 'unsubscribed') from c_suppression s
    join c_customers c on c.email = s.email
    union all
    select customer_key, case {' '.join(f"when type = '{k}' then '{v}'" for k, v in SUPPRESSING_TYPES.items())} end
    from c_email where type in ({sql_list(tuple(SUPPRESSING_TYPES))}) and customer_key is not null
),
c_suppressed as (
    select customer_key,
           min(case reason {' '.join(f"when '{r}' then {i}" for i, r in enumerate(REASON_ORDER))}
               else {len(REASON_ORDER)} end) as severity
    from c_suppressed_all where reason is not null group by customer_key
)"""

SEVERITY_TO_REASON = "case severity " + " ".join(
    f"when {i} then '{r}'" for i, r in enumerate(REASON_ORDER)) + " end"


def suppressed_sql(conn: Sql, tables: InputTables = InputTables()) -> str:
    """Query listing (customer_key, reason) of every suppressed customer."""
    return (input_ctes(conn, tables) + "," + SUPPRESSED_CTE
            + f"\nselect customer_key, {SEVERITY_TO_REASON} as reason from c_suppressed")


def suppressed_customers(conn: Sql, tables: InputTables = InputTables()) -> pd.DataFrame:
    return conn.query(suppressed_sql(conn, tables))


def violations(conn: Sql, sendable_segments: list[str], membership: str = "marts.segment_membership",
               tables: InputTables = InputTables(), examples: int = 20) -> tuple[int, pd.DataFrame]:
    """Members of sendable segments who are suppressed: (count, a few examples). Must be 0."""
    if not sendable_segments:
        return 0, pd.DataFrame(columns=["segment", "customer_key", "reason"])
    marks = ", ".join("?" for _ in sendable_segments)
    sql = (input_ctes(conn, tables) + "," + SUPPRESSED_CTE + f"""
select m.segment, m.customer_key, {SEVERITY_TO_REASON} as reason
from {membership} m join c_suppressed s on s.customer_key = m.customer_key
where m.segment in ({marks})
order by m.segment, m.customer_key""")
    found = conn.query(sql, list(sendable_segments))
    return len(found), found.head(examples)
