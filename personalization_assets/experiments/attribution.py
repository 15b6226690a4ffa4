"""The attribution rule: which outcomes count for an experiment's member. One function, here.

Rule (intent-to-treat): a member's window opens at their FIRST exposure to the experiment, real or
ghost, and lasts `window`; every outcome of the same customer_key with exposed_at <= occurred_at <
exposed_at + window counts, in every experiment the customer is in (experiments are independent
randomizations). A member with no outcome counts as zeros, never as missing: dropping them would
compare buyers with buyers. Outcomes before the exposure never count, so a purchase that caused a
suppression cannot be credited to the email; those of the `pre_period` before it are the CUPED
covariates (pre_spend, pre_visits). Computed in an in-memory DuckDB: 10M outcomes in seconds.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pandas as pd

OUTCOME_KINDS = ("order", "visit", "email_open", "email_click")
OUTCOME_COLUMNS = ["orders", "revenue_minor", "visits", "email_opens", "email_clicks", "converted"]
DEFAULT_WINDOW = timedelta(days=7)
DEFAULT_PRE_PERIOD = timedelta(days=30)

_RULE = """first as (
    select experiment, customer_key, arg_min(arm, exposed_at) as arm, min(exposed_at) as exposed_at
    from exposures group by experiment, customer_key
), hits as (
    select f.experiment, f.customer_key, o.kind, o.value_minor, o.occurred_at >= f.exposed_at as after
    from first f join outcomes o on o.customer_key = f.customer_key
    where o.occurred_at >= f.exposed_at - to_seconds(cast(? as double))
      and o.occurred_at < f.exposed_at + to_seconds(cast(? as double))
), per as (
    select experiment, customer_key,
        count(*) filter (where after and kind = 'order') as orders,
        coalesce(sum(value_minor) filter (where after and kind = 'order'), 0) as revenue_minor,
        count(*) filter (where after and kind = 'visit') as visits,
        count(*) filter (where after and kind = 'email_open') as email_opens,
        count(*) filter (where after and kind = 'email_click') as email_clicks,
        coalesce(sum(value_minor) filter (where not after and kind = 'order'), 0) as pre_spend,
        count(*) filter (where not after and kind = 'visit') as pre_visits
    from hits group by experiment, customer_key
)
select f.experiment, f.customer_key, f.arm, f.exposed_at,
    coalesce(p.orders, 0) as orders, coalesce(p.revenue_minor, 0) as revenue_minor, coalesce(p.visits, 0) as visits,
    coalesce(p.email_opens, 0) as email_opens, coalesce(p.email_clicks, 0) as email_clicks,
    cast(coalesce(p.orders, 0) > 0 as bigint) as converted,
    coalesce(p.pre_spend, 0) as pre_spend, coalesce(p.pre_visits, 0) as pre_visits
from first f left join per p on p.experiment = f.experiment and p.customer_key = f.customer_key
order by f.experiment, f.customer_key
"""


def attribute_outcomes(exposures: pd.DataFrame, outcomes: pd.DataFrame, window: timedelta = DEFAULT_WINDOW,
                       pre_period: timedelta = DEFAULT_PRE_PERIOD) -> pd.DataFrame:
    """exposures: experiment, customer_key, arm, exposed_at (any number per member);
    outcomes: customer_key, occurred_at, kind (one of OUTCOME_KINDS), value_minor (orders' revenue).
    Returns one row per (experiment, customer_key): arm, exposed_at, OUTCOME_COLUMNS and the
    pre-period covariates pre_spend, pre_visits."""
    unknown = set(pd.unique(outcomes["kind"])) - set(OUTCOME_KINDS) if len(outcomes) else set()
    if unknown:
        raise ValueError(f"outcome kinds {sorted(unknown)} are not attributable; expected {OUTCOME_KINDS}")
    conn = duckdb.connect()
    try:
        conn.execute("set TimeZone = 'UTC'")
        conn.execute("set enable_progress_bar = false")
        conn.register("exposures", _typed(exposures[["experiment", "customer_key", "arm", "exposed_at"]], "exposed_at"))
        conn.register("outcomes", _typed(outcomes[["customer_key", "occurred_at", "kind", "value_minor"]], "occurred_at"))
        out = conn.execute("with " + _RULE, [pre_period.total_seconds(), window.total_seconds()]).df()
    finally:
        conn.close()
    return _columns(out)


def attribute_in_duckdb(raw, sources: str, window: timedelta = DEFAULT_WINDOW,
                        pre_period: timedelta = DEFAULT_PRE_PERIOD) -> pd.DataFrame:
    """The same rule run inside a DuckDB warehouse, where 10M outcomes need not travel to pandas:
    `sources` is a `with` clause ending in CTEs named `exposures` and `outcomes` (same columns)."""
    return _columns(raw.execute(attribution_sql(sources), [pre_period.total_seconds(), window.total_seconds()]).df())


def attribution_sql(sources: str) -> str:
    """The rule's query over `sources` (as `attribute_in_duckdb` takes them); its parameters are
    the pre-period and the window, in seconds."""
    return f"{sources.rstrip().rstrip(',')},\n{_RULE}"


def _columns(out: pd.DataFrame) -> pd.DataFrame:
    for col in [*OUTCOME_COLUMNS, "pre_spend", "pre_visits"]:
        out[col] = out[col].astype("int64")
    out["exposed_at"] = pd.to_datetime(out["exposed_at"], utc=True)
    return out


def _typed(frame: pd.DataFrame, time_column: str):
    """As an Arrow table: DuckDB scans Arrow strings natively, pandas object columns one by one."""
    import pyarrow as pa

    columns = {}
    for col in frame.columns:
        values = frame[col]
        if col == time_column:
            columns[col] = pa.array(pd.to_datetime(values, utc=True))
        elif col == "value_minor":
            columns[col] = pa.array(pd.to_numeric(values, errors="coerce"), type=pa.float64(), from_pandas=True)
        else:
            try:
                columns[col] = pa.array(values, type=pa.string(), from_pandas=True)
            except (pa.ArrowTypeError, pa.ArrowInvalid):  # e.g. integer keys: compare them as text
                columns[col] = pa.array(values.astype(str), type=pa.string())
    return pa.table(columns)
