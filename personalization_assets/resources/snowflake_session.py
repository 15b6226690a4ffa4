"""Per-step Snowflake session settings: a query tag naming the run and the asset(s) of the step,
so the warehouse's query history and cost can be read per asset, and the virtual warehouse an
asset asks for through its tag `snowflake/warehouse` (e.g. a larger one for identity
resolution), instead of one size for the whole graph."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dagster as dg

WAREHOUSE_TAG = "snowflake/warehouse"
QUERY_TAG_LIMIT = 2000  # characters Snowflake keeps in QUERY_TAG


@dataclass(frozen=True)
class StepSession:
    query_tag: str | None = None
    warehouse: str | None = None  # None: the resource's default warehouse


def query_tag(run_id: str, job: str, asset_keys: Iterable[dg.AssetKey]) -> str:
    """JSON, so `query_tag:asset` can be parsed in QUERY_HISTORY; trimmed to Snowflake's limit."""
    assets = sorted(k.to_user_string() for k in asset_keys)
    tag = json.dumps({"app": "personalization", "run_id": run_id, "job": job, "assets": assets})
    if len(tag) > QUERY_TAG_LIMIT:
        tag = json.dumps({"app": "personalization", "run_id": run_id, "job": job,
                          "assets": assets[:1], "more_assets": len(assets) - 1})
    return tag


def warehouse_for(asset_keys: Iterable[dg.AssetKey],
                  tags_by_key: Mapping[dg.AssetKey, Mapping[str, str]]) -> str | None:
    """The warehouse the step's assets ask for; assets computed in one step must agree."""
    asked = {tags_by_key.get(k, {}).get(WAREHOUSE_TAG) for k in asset_keys} - {None}
    if len(asked) > 1:
        raise ValueError(f"the assets {sorted(k.to_user_string() for k in asset_keys)} run in one step but ask for "
                         f"different Snowflake warehouses ({sorted(asked)}) in their tag {WAREHOUSE_TAG!r}: "
                         "give them the same one")
    return next(iter(asked), None)


def current_step_session() -> StepSession:
    """The session of the asset step running now; outside an asset step (a CLI command, a check,
    a sensor) no tag and the default warehouse."""
    try:
        context = dg.AssetExecutionContext.get()
    except dg.DagsterInvariantViolationError:  # no asset step in scope: nothing to name
        return StepSession()
    keys = context.selected_asset_keys
    return StepSession(query_tag=query_tag(context.run.run_id, context.run.job_name, keys),
                       warehouse=warehouse_for(keys, context.assets_def.tags_by_key))
