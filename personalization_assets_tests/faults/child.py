"""One run in its own process, for the crash tests (the tests `kill -9` it):

    python -m personalization_assets_tests.faults.child pool|identity|identity_map|crm [run-config JSON]

`pool`: one small asset of the warehouse pool; `identity`: the core identity assets over the
staged tables already in the warehouse (PERSONALIZATION_DUCKDB_PATH); `identity_map` alone; `crm`:
the CRM load and its staging (CRM_DATABASE_URL, consent included). The instance is the one in
DAGSTER_HOME; the run goes through `execute_watched`, like the demo's. Prints `DONE <success>`.
"""

from __future__ import annotations

import json
import os
import sys
import time

import dagster as dg

from personalization_assets import settings
from personalization_assets.assets import raw, staging
from personalization_assets.assets.common import WAREHOUSE_POOL
from personalization_assets.assets.core import customers, identity_map
from personalization_assets.resources.faults import fault_point
from personalization_assets.resources.io_manager import AtomicDuckDBIOManager
from personalization_assets.resources.pool import execute_watched
from personalization_assets.resources.sources import CrmDatabase
from personalization_assets.resources.warehouse import DuckDBWarehouse

IDENTITY_TABLES = ["customers", "customer_crosswalk", "merge_evidence"]
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dg.asset(key=["ops", "heartbeat"], pool=WAREHOUSE_POOL)
def heartbeat(warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """A one-row write in the pool: enough to hold the slot where a test kills the process."""
    fault_point("step_start", "ops.heartbeat")
    with warehouse.connect() as conn, conn.transaction():
        conn.ensure_schema("ops")
        conn.execute("create table if not exists ops.heartbeat (written_at double)")
        conn.execute("insert into ops.heartbeat values (?)", [time.time()])
    return dg.MaterializeResult()


def job(which: str, database: str | None = None) -> dg.JobDefinition:
    database = database or str(settings.warehouse_path())
    assets = ([heartbeat] if which == "pool" else [raw.crm_customers, staging.customers] if which == "crm" else
              [customers, identity_map, dg.AssetSpec(["staging", "customers"]), dg.AssetSpec(["staging", "events"])])
    selection = {"pool": [dg.AssetKey(["ops", "heartbeat"])], "identity_map": [dg.AssetKey(["core", "identity_map"])],
                 "identity": [dg.AssetKey(["core", t]) for t in IDENTITY_TABLES + ["identity_map"]],
                 "crm": [dg.AssetKey(["raw", "crm_customers"]), dg.AssetKey(["staging", "customers"])]}[which]
    crm = {"crm": CrmDatabase(url=os.environ["CRM_DATABASE_URL"])} if which == "crm" else {}
    defs = dg.Definitions(
        assets=assets, jobs=[dg.define_asset_job(which, selection=selection)],
        resources={"io_manager": AtomicDuckDBIOManager(database=database),
                   "warehouse": DuckDBWarehouse(database=database), **crm})
    return defs.resolve_job_def(which)


@dg.definitions
def cli_definitions() -> dg.Definitions:
    """The `pool` asset with the platform's executor, for `dagster asset materialize -m ...child`."""
    from personalization_assets.definitions import defs as platform

    return dg.Definitions(assets=[heartbeat], executor=platform().executor,
                          resources={"warehouse": DuckDBWarehouse(database=str(settings.warehouse_path()))})


def run(which: str, config: dict | None = None, instance: dg.DagsterInstance | None = None,
        say=lambda line: print(line, file=sys.stderr, flush=True), database: str | None = None,
        ) -> dg.ExecuteInProcessResult:
    run_config = {**QUIET, **({"ops": {"customers": {"config": config}}} if config else {})}
    return execute_watched(job(which, database), instance or dg.DagsterInstance.get(), say=say, poll=1.0,
                           run_config=run_config, raise_on_error=False)


if __name__ == "__main__":
    try:
        result = run(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else None)
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
        sys.exit(130)
    print(f"DONE {result.success}", flush=True)
    sys.exit(0 if result.success else 1)
