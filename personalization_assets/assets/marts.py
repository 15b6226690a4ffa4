"""Marts: what the email team works with. Thin shells over `marts/` and `audiences/`.

All four tables are computed inside the warehouse through the `warehouse` resource (DuckDB
locally, Snowflake in prod), so the same segment SQL runs on both.
"""

from datetime import timedelta

import dagster as dg

from ..audiences import suppression
from ..audiences.membership import CHANGES, MEMBERSHIP, load_segments, membership_sample, run_segments
from ..marts.payloads import replace_payloads
from ..marts.payloads_sql import write_payloads
from ..marts.profiles import TARGET as PROFILES_TABLE, materialize_profiles
from ..marts.render import preview_markdown
from ..privacy import mask_frame
from ..resources.warehouse import Warehouse
from .common import EAGER, WAREHOUSE_POOL, eager_or_cron, frame_metadata, utc_now

# What the e-mail team sees: segments go stale after 2 h (one missed hourly refresh), profiles after a day.
HOURLY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=3), warn_window=timedelta(hours=2))
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=30), warn_window=timedelta(hours=26))

PROFILES_KEY = dg.AssetKey(["marts", "customer_profiles"])
MEMBERSHIP_KEY = dg.AssetKey(["marts", "segment_membership"])
CHANGES_KEY = dg.AssetKey(["marts", "segment_changes"])
PAYLOADS_KEY = dg.AssetKey(["marts", "personalization_payloads"])
PAYLOADS_TABLE = "marts.personalization_payloads"
WITH_CART = '{"cart": [{%'  # payload keys are sorted: a non-empty cart opens the document
SUPPRESSION_KEY = dg.AssetKey(["activation", "suppression"])
INPUTS = [["core", "customers"], ["core", "customer_crosswalk"], ["core", "identity_map"],
          ["staging", "orders"], ["staging", "order_lines"], ["staging", "events"],
          ["staging", "email_events"]]


def _lineage(pairs: dict[str, list[tuple[list[str], str]]]) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(deps_by_column={
        col: [dg.TableColumnDep(asset_key=dg.AssetKey(key), column_name=src) for key, src in deps]
        for col, deps in pairs.items()})


PROFILE_LINEAGE = _lineage({
    "email": [(["core", "customers"], "email")],
    "first_name": [(["core", "customers"], "first_name")],
    "locale": [(["core", "customers"], "locale")],
    "orders_count": [(["staging", "orders"], "order_id")],
    "historical_value_minor": [(["staging", "orders"], "total_reporting_minor")],
    "last_viewed_sku": [(["staging", "events"], "sku")],
    "last_carted_sku": [(["staging", "events"], "sku")],
})


@dg.asset(key=PROFILES_KEY, deps=INPUTS, group_name="marts", pool=WAREHOUSE_POOL,
          tags={"pii": "true"}, kinds={"sql", "python"}, freshness_policy=DAILY_FRESHNESS,
          automation_condition=eager_or_cron("0 3 * * *"))
def customer_profiles(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """One row per customer: recency, frequency, monetary value with RFM scores and segment,
    historical and predicted value (BG/NBD + Gamma-Gamma), first and last order, average order
    value, top categories, last viewed and carted products, e-mail engagement, preferred send hour
    in the customer's time zone, locale, and subscription and consent state.

    Built inside the warehouse end to end (`marts/profiles.py`): the CLV models are fitted on a
    sample of buyers in Python and everyone is scored in SQL."""
    with warehouse.connect() as conn:
        built = materialize_profiles(conn, utc_now())
        sample = conn.query(f"select * from {PROFILES_TABLE} order by customer_key limit 10")
        summary = conn.query(f"select rfm_segment, count(*) as n, sum(case when sendable then 1 else 0 end) as sendable "
                             f"from {PROFILES_TABLE} group by rfm_segment order by rfm_segment")
    if not built.clv_fit.get("fitted"):
        context.log.warning(f"CLV not fitted: {built.clv_fit.get('reason')}")
    metadata = frame_metadata(
        sample, clv_fit=built.clv_fit, rfm_segments={str(k): int(v) for k, v in zip(summary["rfm_segment"], summary["n"])},
        sendable=int(summary["sendable"].sum()), **{"dagster/column_lineage": PROFILE_LINEAGE})
    metadata["dagster/row_count"] = dg.MetadataValue.int(built.rows)
    return dg.MaterializeResult(metadata=metadata)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(MEMBERSHIP_KEY, deps=[PROFILES_KEY, SUPPRESSION_KEY, *INPUTS], group_name="marts", kinds={"sql"},
                     tags={"pii": "true"},
                     freshness_policy=HOURLY_FRESHNESS, automation_condition=eager_or_cron("5 * * * *"),
                     description="Who is in each segment now, and since when (member without "
                                 "interruption). Suppressed customers are never in a sendable segment."),
        dg.AssetSpec(CHANGES_KEY, deps=[PROFILES_KEY], group_name="marts", kinds={"sql"}, tags={"pii": "true"},
                     freshness_policy=HOURLY_FRESHNESS, automation_condition=eager_or_cron("5 * * * *"),
                     description="Who entered or exited each segment at each run: what destinations "
                                 "need for incremental syncs."),
    ],
    can_subset=True,
    pool=WAREHOUSE_POOL,
)
def segments(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Runs every segment (each audience in `audiences/definitions/` that is not a trigger) inside the warehouse."""
    definitions = load_segments()
    as_of = utc_now()
    with warehouse.connect() as conn:
        run = run_segments(conn, definitions, as_of)
        sample = membership_sample(conn, limit=10)
        changes = conn.query(f"select run_at, segment, customer_key, change from {CHANGES} "
                             "where run_at = ? order by segment, change, customer_key limit 10", [as_of])
        total = int(conn.scalar(f"select count(*) from {MEMBERSHIP}"))
    if MEMBERSHIP_KEY in context.selected_asset_keys:
        meta = frame_metadata(sample, segment_sizes=run.sizes,
                              definitions={s.name: {"priority": s.priority, "refresh": s.refresh,
                                                    "sendable": s.sendable, "exclusions": list(s.exclusions),
                                                    "description": s.description} for s in definitions})
        meta["dagster/row_count"] = dg.MetadataValue.int(total)
        meta.update({f"segment_size:{name}": dg.MetadataValue.int(n) for name, n in run.sizes.items()})
        yield dg.MaterializeResult(asset_key=MEMBERSHIP_KEY, metadata=meta)
    if CHANGES_KEY in context.selected_asset_keys:
        meta = frame_metadata(changes, entered=run.entered, exited=run.exited)
        meta["dagster/row_count"] = dg.MetadataValue.int(sum(run.entered.values()) + sum(run.exited.values()))
        yield dg.MaterializeResult(asset_key=CHANGES_KEY, metadata=meta)


@dg.asset_check(asset=MEMBERSHIP_KEY, blocking=True, pool=WAREHOUSE_POOL,
                description="No unsubscribed, bounced, complained, no-consent or e-mail-less "
                            "customer is a member of a sendable segment.")
def suppressed_never_in_sendable_segments(warehouse: Warehouse) -> dg.AssetCheckResult:
    sendable = [s.name for s in load_segments() if s.sendable]
    with warehouse.connect() as conn:
        count, examples = suppression.violations(conn, sendable)
        suppressed = len(suppression.suppressed_customers(conn))
    return dg.AssetCheckResult(
        passed=count == 0, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"violations": count, "suppressed_customers": suppressed,
                  "examples": dg.MetadataValue.md(mask_frame(examples).to_markdown(index=False) if count else "_none_")})


@dg.asset(key=PAYLOADS_KEY, deps=[PROFILES_KEY, MEMBERSHIP_KEY, *INPUTS], group_name="marts",
          pool=WAREHOUSE_POOL, tags={"pii": "true"}, kinds={"sql", "python"},
          freshness_policy=HOURLY_FRESHNESS, automation_condition=EAGER)
def personalization_payloads(warehouse: Warehouse) -> dg.MaterializeResult:
    """Per sendable customer, the merge fields an e-mail template needs: greeting (first name or a
    fallback), cart contents priced in the customer's currency, last viewed items,
    recommendations, loyalty tier, discount eligibility and locale (JSON in `payload`).

    On DuckDB SQL writes the table, chunk by chunk of customers in bounded memory
    (`marts/payloads_sql.py`: no row passes through Python); elsewhere `marts/payloads.py` shapes
    the selected rows in Python (the same bytes)."""
    with warehouse.connect() as conn:
        if conn.dialect == "duckdb":
            rows = write_payloads(conn)
        else:
            rows = replace_payloads(conn)
        summary = conn.query(f"select loyalty_tier, count(*) as n, sum(case when payload like ? then 1 else 0 end) "
                             f"as with_cart, sum(case when discount_eligible then 1 else 0 end) as discount "
                             f"from {PAYLOADS_TABLE} group by loyalty_tier", [WITH_CART])
        sample = conn.query(f"select * from {PAYLOADS_TABLE} order by case when payload like ? then 0 else 1 end, "
                            "customer_key limit 10", [WITH_CART])
    metadata = frame_metadata(
        sample, loyalty_tiers={str(t): int(n) for t, n in zip(summary["loyalty_tier"], summary["n"])},
        with_cart=int(summary["with_cart"].sum()), discount_eligible=int(summary["discount"].sum()),
        template_preview=dg.MetadataValue.md(preview_markdown(sample)))
    metadata["dagster/row_count"] = dg.MetadataValue.int(rows)
    return dg.MaterializeResult(metadata=metadata)


defs = dg.Definitions(assets=[customer_profiles, segments, personalization_payloads],
                      asset_checks=[suppressed_never_in_sendable_segments])
