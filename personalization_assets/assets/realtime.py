"""Real-time triggers in the asset graph: the fire ledger mirrored into the warehouse, and
backtests of any trigger over the staged event history.

The engine itself runs outside Dagster (`personalization triggers`): sub-second decisions need a
resident consumer, and DuckDB allows one writing process, which the Dagster runs hold. So the
engine keeps its ledger in SQLite and this asset copies it in, keyed by fire_key (idempotent).
"""

from datetime import datetime, timedelta

import dagster as dg
import pandas as pd

from .. import settings
from ..heap import collecting
from ..realtime.backtest import backtest, history_start, identity_index
from ..realtime.definitions import load_trigger_set, parse_duration
from ..realtime.guards import CustomerState, DictGuardProvider, SqliteGuardProvider
from ..realtime.warehouse_guard import GuardTally, guard_sql
from ..realtime.ledger import read_fires
from ..quality.table_checks import read_chunks
from ..resources.warehouse import Warehouse
from .common import EAGER, EVERY_5_MINUTES, ON_DEMAND, WAREHOUSE_POOL, frame_metadata

MIRROR_OVERLAP = timedelta(minutes=5)  # re-read a little: a commit may land late in recorded_at order


class TriggerFiresConfig(dg.Config):
    ledger_path: str = ""  # default: <data dir>/triggers.sqlite, where `personalization triggers` writes


@dg.asset(key=["activation", "trigger_fires"], group_name="activation", pool=WAREHOUSE_POOL,
          kinds={"sqlite", "duckdb"}, tags={"pii": "true"}, deps=[["raw", "events"]],
          automation_condition=EVERY_5_MINUTES)
def trigger_fires(config: TriggerFiresConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Every decision of the real-time trigger engine, one row per fire key: who was (or, with
    `outcome = suppress`, was not) messaged by which trigger, for which cart and when.

    The engine decides from the event bus (the stream raw.events mirrors) as events arrive; the
    sensor `activation_stream_sensor` records its fires as observations within a minute, and this
    copy into the warehouse runs every 5 minutes."""
    path = config.ledger_path or str(settings.data_dir() / "triggers.sqlite")
    with warehouse.connect() as conn:
        since = 0.0
        if conn.table_exists("activation", "trigger_fires"):
            latest = conn.scalar("select max(recorded_at) from activation.trigger_fires")
            if latest is not None and not pd.isna(latest):
                since = (pd.Timestamp(latest).tz_localize("UTC") if pd.Timestamp(latest).tzinfo is None
                         else pd.Timestamp(latest)).timestamp() - MIRROR_OVERLAP.total_seconds()
        new = read_fires(path, since)
        conn.prepare_table("activation", "trigger_fires", new)  # `new` is typed even when empty
        with conn.transaction():
            written = conn.upsert_frame("activation", "trigger_fires", new, ["fire_key"])
        total = conn.scalar("select count(*) from activation.trigger_fires")
        counts = conn.query("select trigger, outcome, count(*) as n from activation.trigger_fires"
                            " group by all order by 1, 2")
    by_trigger = {f"{r.trigger}:{r.outcome}": int(r.n) for r in counts.itertuples()}
    return dg.MaterializeResult(metadata={
        **frame_metadata(new, rows_in=len(new), upserted=written, by_trigger_outcome=by_trigger),
        "dagster/row_count": dg.MetadataValue.int(int(total)), "ledger": path})


GUARD_CHUNK_ROWS = 100_000  # guard rows read from the warehouse at a time


class TriggerGuardConfig(dg.Config):
    guard_path: str = ""  # default: <data dir>/trigger_guard.sqlite, where `personalization triggers` reads


@dg.asset(key=["activation", "trigger_guard"], group_name="activation", pool=WAREHOUSE_POOL,
          deps=[["core", "customers"], ["core", "identity_map"], ["core", "customer_crosswalk"],
                ["staging", "orders"], ["staging", "email_events"]],
          kinds={"duckdb", "sqlite"}, tags={"pii": "true"}, automation_condition=EAGER)
def trigger_guard(config: TriggerGuardConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """What the trigger engine re-checks right before a fire, per tracked userId: opt-in, consent,
    unsubscribe/bounce/complaint, latest purchase and time zone, copied from the warehouse into the
    engine's guard store. Unsubscribes are sticky there: a later sync never clears one."""
    path = config.guard_path or str(settings.data_dir() / "trigger_guard.sqlite")
    tally = GuardTally()
    store = SqliteGuardProvider(path)
    try:
        with warehouse.connect() as conn:
            ready = conn.table_exists("core", "identity_map") and conn.table_exists("core", "customers")
            # a chunk at a time, in one SQLite transaction: at 1M customers 860 MB peak (one frame: 1,218 MB)
            chunks = collecting(read_chunks(conn, guard_sql(conn), rows=GUARD_CHUNK_ROWS)) if ready else iter([])
            written = store.sync(row for frame in chunks for row in tally.rows_of(frame))
    finally:
        store.close()
    metadata = frame_metadata(tally.sample, synced=written, unsubscribed=tally.unsubscribed,
                              sendable=tally.sendable, guard_store=path)
    metadata["dagster/row_count"] = dg.MetadataValue.int(tally.rows)
    return dg.MaterializeResult(metadata=metadata)


class TriggerBacktestConfig(dg.Config):
    trigger: str = "cart_abandonment"
    start: str = ""  # ISO date/time; empty = from the first staged event
    end: str = ""  # ISO date/time, exclusive; empty = through the last event (every timer decides)
    delay: str = ""  # try another window, e.g. "30m"; empty = as defined
    respect_consent: bool = True


def _when(text: str) -> datetime | None:
    return pd.Timestamp(text).tz_localize("UTC").to_pydatetime() if text and pd.Timestamp(text).tzinfo is None \
        else (pd.Timestamp(text).tz_convert("UTC").to_pydatetime() if text else None)


def _guard(conn, respect_consent: bool) -> DictGuardProvider:
    """Consent and time zone per tracked userId, from the golden customer records."""
    if not respect_consent:
        return DictGuardProvider(allow_unknown=True)
    if not (conn.table_exists("core", "identity_map") and conn.table_exists("core", "customers")):
        return DictGuardProvider()  # nobody known: nobody may be messaged
    rows = conn.query(
        "select m.identity as user_id, c.email_opt_in, c.consent_processing, c.timezone"
        " from core.identity_map m join core.customers c on c.customer_key = m.customer_key"
        " where m.identity_type = 'user_id'")
    return DictGuardProvider({str(r.user_id): CustomerState(
        email_opt_in=bool(r.email_opt_in), consent_processing=bool(r.consent_processing),
        timezone=r.timezone if isinstance(r.timezone, str) else None) for r in rows.itertuples()})


@dg.asset(key=["activation", "trigger_backtest"], group_name="activation", pool=WAREHOUSE_POOL,
          deps=[["staging", "events"], ["core", "identity_map"], ["core", "customers"]],
          kinds={"pandas", "duckdb"}, tags={"pii": "true", **ON_DEMAND})
def trigger_backtest(config: TriggerBacktestConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Who a trigger would have messaged, and when, had it been on over a past range of events:
    the live engine's rules (windows, cancellation, consent, cooldown, cap, quiet hours) replayed
    on the staged history, so a rule can be tried before it is turned on.

    manual: an analysis someone runs with a question in its config (trigger, range, delay); the
    answer to no question is not worth recomputing, and a replay of the whole history costs about
    58 µs per event, so the default jobs leave it out (select it by name)."""
    trigger = load_trigger_set().get(config.trigger)
    ts = load_trigger_set().only(config.trigger)
    if config.delay:
        ts = ts.with_overrides(**{config.trigger: {"delay": parse_duration(config.delay)}})
    start, end = _when(config.start), _when(config.end)
    with warehouse.connect() as conn:
        sql, params = "select * from staging.events where 1 = 1", []
        since = history_start(trigger, start) if start is not None else None  # trait windows look back
        if since is not None:
            sql, params = sql + " and timestamp >= ?", params + [since]
        if end is not None:
            sql, params = sql + " and timestamp < ?", params + [end]
        events = conn.query(sql + " order by received_at, message_id", params)
        guard = _guard(conn, config.respect_consent)
        identity = identity_index(conn.query("select identity_type, identity, customer_key from core.identity_map")) \
            if trigger.when is not None and conn.table_exists("core", "identity_map") else None
        result = backtest(events, ts, start, end, guard, identity=identity)  # traits keyed as the warehouse keys them
        result.insert(0, "backtest", f"{config.trigger}|{config.start}|{config.end}|{config.delay}")
        conn.prepare_table("activation", "trigger_backtest", result)
        with conn.transaction():
            conn.replace_frame("activation", "trigger_backtest", result)
    fired = result[result["outcome"] == "fire"]
    return dg.MaterializeResult(metadata=frame_metadata(
        result, rows_in=len(events), would_message=len(fired),
        customers=int(fired["customer_id"].nunique()),
        suppressed_by_reason=result.loc[result["outcome"] == "suppress", "reason"].value_counts().to_dict()))


defs = dg.Definitions(assets=[trigger_fires, trigger_guard, trigger_backtest])
