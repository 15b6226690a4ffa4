"""Audiences: each audience's membership on its own declared refresh, the computed traits, and the
equivalence of the SQL and stream compilations on the warehouse's history.

A thin shell over `audiences/`: the language, the compilers, the traits and the replay are plain
Python there.
"""

from datetime import timedelta

import dagster as dg
import pandas as pd

from .. import settings
from ..audiences import traits as tr
from ..audiences import warehouse as aud
from ..audiences.model import Audience, EventCond, ComputedCond, TraitCond, conditions, load_builtin
from ..audiences.preview import SCHEMA, on_warehouse, store_membership
from ..audiences.refresh import Refresh, refresh_of
from ..audiences.traits_store import TraitStore, trait_rows
from ..partitions import ARRIVAL_DAYS
from ..privacy import mask_value
from ..resources.warehouse import Warehouse
from .common import (EAGER, ON_DEMAND, WAREHOUSE_POOL, eager_or_cron, frame_metadata, prepare_cursors,
                     read_cursor, utc_now, write_cursor)

KEY = dg.AssetKey(["marts", "audience_equivalence"])
# Declared tolerance: unexplained disagreements allowed. A late event is explained; anything else
# means the two compilations of one definition differ, and no audience built on them may ship.
TOLERANCE_UNEXPLAINED = 0
DTYPES = {"instant": "datetime64[ns, UTC]", "audience": "object", "customer_key": "object",
          "in_sql": "bool", "in_stream": "bool", "reason": "object"}


class AudienceEquivalenceConfig(dg.Config):
    days: float = 30.0  # the window of history replayed, ending at the last staged event
    max_instants: int = 200  # instants compared, spread over the window's change points


@dg.asset(key=KEY, group_name="audiences", pool=WAREHOUSE_POOL, kinds={"duckdb", "python"},
          deps=[["staging", "events"], ["core", "identity_map"]], tags={**ON_DEMAND, "pii": "true"})
def audience_equivalence(config: AudienceEquivalenceConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    """Every person that the SQL and the stream compilations of one audience definition disagree
    about, at the instants where membership can change over the last `days` of history, with the
    reason (late_event, or unexplained). Audiences that cannot run in the stream are listed.

    on demand: it replays a window of history, so it runs when someone asks (or before a release
    of definitions), not on every micro-batch."""
    with warehouse.connect() as conn:
        has_identity = conn.table_exists("core", "identity_map")
        report, refused, (start, end) = aud.run(conn, conn.dialect, has_identity, load_builtin(),
                                                config.days, config.max_instants)
        frame = report.disagreements.copy()
        frame["instant"] = pd.to_datetime(frame["instant"].astype("float64"), unit="s", utc=True)
        frame = frame.astype(DTYPES)
        conn.prepare_table("marts", "audience_equivalence", frame)
        with conn.transaction():
            conn.replace_frame("marts", "audience_equivalence", frame)
    return dg.MaterializeResult(metadata=frame_metadata(
        frame, instants=report.instants, compared=report.compared, unexplained=report.unexplained,
        by_reason={str(k): int(v) for k, v in frame["reason"].value_counts().items()},
        not_streamable=refused,
        window=f"{aud.utc(start).isoformat()} .. {aud.utc(end).isoformat()}" if report.instants else "no events"))


@dg.asset_check(asset=KEY, blocking=True, pool=WAREHOUSE_POOL,
                description="The SQL and stream compilations of every audience agree, but for "
                            f"explained disagreements (at most {TOLERANCE_UNEXPLAINED} unexplained).")
def audiences_agree_within_tolerance(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        frame = conn.query("select audience, reason, count(*) as n from marts.audience_equivalence "
                           "group by audience, reason order by audience, reason")
    unexplained = int(frame.loc[frame["reason"] == "unexplained", "n"].sum())
    return dg.AssetCheckResult(
        passed=unexplained <= TOLERANCE_UNEXPLAINED, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"unexplained": unexplained, "tolerance": TOLERANCE_UNEXPLAINED,
                  "by_audience": dg.MetadataValue.md(frame.to_markdown(index=False) if len(frame) else "_none_")})


# -- each audience, refreshed as its definition declares -----------------------------------------
# Eager audiences follow each micro-batch; they are stale when nothing reached them for 2 h.
EAGER_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=3), warn_window=timedelta(hours=2))


def automation_for(refresh: Refresh) -> tuple[dg.AutomationCondition, dg.FreshnessPolicy, str]:
    """(automation condition, freshness policy, the sentence the description gets) of a refresh.
    A cron refreshes on each tick (the rules age with the clock even without new data) and is late
    when a tick passes with no refresh since the previous one; eager follows new data."""
    if refresh.kind == "cron":
        condition = (dg.AutomationCondition.cron_tick_passed(refresh.cron).since_last_handled()
                     & ~dg.AutomationCondition.in_progress()
                     & dg.AutomationCondition.all_deps_blocking_checks_passed()
                     ).with_label(f"on each tick of {refresh.cron}, after blocking checks")
        policy = dg.FreshnessPolicy.cron(deadline_cron=refresh.cron, lower_bound_delta=refresh.max_gap)
        return condition, policy, f"Refreshes on each tick of its declared cron `{refresh.cron}` (UTC)"
    return EAGER, EAGER_FRESHNESS, "Refreshes eagerly (`refresh: eager`): after each new batch of its inputs"


def audience_key(audience: Audience) -> dg.AssetKey:
    return dg.AssetKey([SCHEMA, audience.name])


def audience_spec(audience: Audience, known: dict[str, Audience] | None = None) -> dg.AssetSpec:
    """The asset of one audience; `known` (every audience by name) adds the inputs of the audiences
    it excludes, whose rules its SQL reads too."""
    condition, policy, says = automation_for(refresh_of(audience))
    reached, todo = {audience.name: audience}, list(audience.exclusions)
    while todo:
        name = todo.pop()
        if known and name in known and name not in reached:
            reached[name] = known[name]
            todo += list(known[name].exclusions)
    leaves = [c for a in reached.values() for c in conditions(a.rule)]
    deps = [["marts", "customer_profiles"]] if any(isinstance(c, TraitCond) for c in leaves) else []
    if any(isinstance(c, (EventCond, ComputedCond)) for c in leaves):
        deps += [["staging", "events"], ["core", "identity_map"]]
    kind = "trigger (sends on entry)" if audience.is_trigger else "audience"
    return dg.AssetSpec(
        audience_key(audience), deps=deps, group_name="audiences", kinds={"sql"}, tags={"pii": "true"},
        automation_condition=condition, freshness_policy=policy,
        description=f"Who is in the {kind} `{audience.name}` now: {audience.description} "
                    f"{says}. Metadata: size, overlap with the other audiences, 5 members with the "
                    "conditions they meet. Suppression is applied downstream (segment membership, syncs).")


AUDIENCES = load_builtin()  # the packaged definitions: one asset each


@dg.multi_asset(specs=[audience_spec(a, {b.name: b for b in AUDIENCES}) for a in AUDIENCES], can_subset=True,
                pool=WAREHOUSE_POOL,
                name="audience_memberships")
def audience_memberships(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Evaluates each selected audience at now into `audiences.<name>`, with its preview."""
    audiences = load_builtin()
    known = {a.name: a for a in audiences}
    chosen = [a for a in audiences if audience_key(a) in context.selected_asset_keys]
    as_of = utc_now()
    with warehouse.connect() as conn:
        sizes = {a.name: store_membership(conn, a, known, as_of) for a in chosen}
        for a in chosen:
            shown = on_warehouse(conn, a, audiences, as_of, members=f"{SCHEMA}.{a.name}")
            shown.samples = {mask_value("customer_key", k): met for k, met in shown.samples.items()}
            sample = conn.query(f"select * from {SCHEMA}.{a.name} order by customer_key limit 10")
            meta = frame_metadata(sample, size=sizes[a.name], overlap=shown.overlap,
                                  audience_preview=dg.MetadataValue.md(shown.markdown()),
                                  refresh=a.refresh or "eager", as_of=as_of.isoformat())
            meta["dagster/row_count"] = dg.MetadataValue.int(sizes[a.name])
            yield dg.MaterializeResult(asset_key=audience_key(a), metadata=meta)


# -- computed traits ------------------------------------------------------------------------------
TRAITS_KEY = dg.AssetKey(["marts", "computed_traits"])
TRAITS_CURSOR = "computed_traits"


class ComputedTraitsConfig(dg.Config):
    trait_store_path: str = ""  # default: <data dir>/trigger_guard.sqlite, beside the engine's guard state


@dg.asset(key=TRAITS_KEY, group_name="audiences", pool=WAREHOUSE_POOL, kinds={"duckdb", "sqlite"},
          partitions_def=ARRIVAL_DAYS, backfill_policy=dg.BackfillPolicy.single_run(), tags={"pii": "true"},
          deps=[["staging", "events"], ["core", "identity_map"]], automation_condition=eager_or_cron("10 * * * *"))
def computed_traits(context: dg.AssetExecutionContext, config: ComputedTraitsConfig,
                    warehouse: Warehouse) -> dg.MaterializeResult:
    """One row per customer, one column per computed trait the audience definitions declare
    (rolling counts, sums, last value, most frequent value), as of the last bucket edge (`as_of`).
    A run folds only its arrival days' events into `marts.computed_trait_state` (a full rebuild
    when the declared traits change), then copies the values to the trigger engine's store.

    Eager on each micro-batch of today's events, and hourly at :10 (windows age with the clock)."""
    traits = tr.declared_traits(load_builtin())
    bucket = tr.bucket_seconds(traits)
    sig = tr.signature(traits, bucket)
    window = context.partition_time_window
    as_of = tr.aligned(utc_now(), bucket)
    with warehouse.connect() as conn:
        conn.ensure_schema("marts")
        conn.execute(tr.STATE_DDL)
        prepare_cursors(conn)
        previous = read_cursor(conn, TRAITS_CURSOR)
        rebuild = previous is None or previous.get("signature") != sig
        with conn.transaction():
            if conn.table_exists("staging", "events"):
                tr.fold(conn, traits, bucket, *((None, None) if rebuild else (window.start, window.end)))
            write_cursor(conn, TRAITS_CURSOR, {"signature": sig, "bucket": bucket})
        has_identity = conn.table_exists("core", "identity_map")
        tr.snapshot(conn, traits, as_of, has_identity)
        sample = conn.query(f"select * from {tr.SNAPSHOT} order by customer_key limit 10")
        total = int(conn.scalar(f"select count(*) from {tr.SNAPSHOT}"))
        state_rows = int(conn.scalar(f"select count(*) from {tr.STATE}"))
        path = config.trait_store_path or str(settings.data_dir() / "trigger_guard.sqlite")
        copied = TraitStore(path).sync(trait_rows(conn, has_identity), as_of)  # streamed, a chunk at a time
    meta = frame_metadata(sample, traits={n: t.kind for n, t in traits.items()}, as_of=as_of.isoformat(),
                          bucket_seconds=bucket, folded="all of staging.events (traits changed)" if rebuild
                          else f"{window.start.date()} .. {window.end.date()} (exclusive)",
                          state_rows=state_rows, trait_store=path, trait_store_rows=copied)
    meta["dagster/row_count"] = dg.MetadataValue.int(total)
    return dg.MaterializeResult(metadata=meta)


defs = dg.Definitions(assets=[audience_equivalence, audience_memberships, computed_traits],
                      asset_checks=[audiences_agree_within_tolerance])
