"""Run the demo end to end: seed the sources, materialize every asset, summarize what was built."""

from __future__ import annotations

import contextlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable

from .. import clock, settings
from .generator import DemoData, InjectedEffect
from .seed_process import seed_in_child
from .manifest import read_manifest, reason_to_start_over
from .state import reset_cursors, start_over

if TYPE_CHECKING:  # Dagster is imported once the sources are seeded: the first line prints sooner
    import dagster as dg
    import pandas as pd


@dataclass
class DemoOutcome:
    success: bool
    warehouse: str
    now: datetime
    run_id: str = ""
    data: DemoData | None = None
    errors: list[str] = field(default_factory=list)
    table_rows: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    duplicates_merged: int = 0
    segment_sizes: dict[str, int] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)  # "asset: check (severity)"
    not_built: list[str] = field(default_factory=list)  # assets a failed blocking check held back
    injected: dict[str, int] = field(default_factory=dict)
    started_over: str | None = None  # why the data dir was started over, if it was


def run_demo(*, seed: int = 7, scale: float = 1.0, now: datetime | None = None, fresh: bool = False,
             inject_bad: bool = False, instance: dg.DagsterInstance | None = None,
             say: Callable[[str], None] = lambda line: None, keep_records: bool = False,
             effect: InjectedEffect | None = None) -> DemoOutcome:
    """Seed and materialize everything as of `now` (default: the data set's own now on a rerun,
    else the clock); `say` gets a line per stage as it completes. With `inject_bad`, break the
    sources first (see `inject_bad_rows`): the run then stops at the failed blocking check, and
    says so. The sources are seeded in a child process (`seed_process.py`: its memory goes back to
    the system before the run). The outcome's `data` keeps the generated record lists only with
    `keep_records` (tests check the warehouse against them; at scale they are too big to carry).
    `effect` injects a known treatment effect into the generated data (the experiment tests)."""
    data_dir = settings.data_dir()
    manifest = read_manifest(data_dir)
    reason = reason_to_start_over(manifest, seed=seed, scale=scale, now=now, fresh=fresh, inject_bad=inject_bad)
    if reason:
        say(f"Starting over ({reason}): the data dir and the Dagster instance's sensor cursors are reset.")
        start_over(data_dir)  # the instance's cursors below, once Dagster is imported
        manifest = None
    now = now or (manifest.now if manifest else clock.utc_now().replace(microsecond=0))

    # Dagster's import, the definitions and the instance (~2.5 s) load in a thread while the child
    # process seeds the sources (~2 s at scale 1, the parent waiting on its pipe): the run starts sooner.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-load") as loader:
        loading = loader.submit(_load_dagster, instance)
        seeded = seed_in_child(data_dir, crm_url=settings.crm_url(), bus_url=settings.event_bus_url(), seed=seed,
                               scale=scale, now=now, inject_bad=inject_bad, keep_records=keep_records,
                               effect=effect, say=say)
        job, instance = loading.result()
    data, injected = seeded.data, seeded.injected
    if injected:
        say(f"  {'injected':<11}" + ", ".join(f"{n} bad {source}" for source, n in injected.items()))

    import dagster as dg

    from ..heap import collections_thinned
    from ..resources.pool import execute_watched
    from .progress import LOGGER_NAME, LayerProgress, progress_logger

    progress = LayerProgress(job, say)
    run_id = str(uuid.uuid4())
    say(f"Run {run_id} (job everything) as of {clock.iso(now)}:")
    if reason:
        reset_cursors(instance)
    with clock.pinned(now), demo_duckdb_memory_limit(), collections_thinned():  # GC: ~6 % of the run's CPU
        result = execute_watched(  # frees dead runs' pool slots, says what it waits for, stops on Ctrl-C
            # A watchdog poll reads the pool's slots and its holders' events from the instance's
            # SQLite storage; every 5 s is soon enough for a line about a wait, and costs a fifth.
            job.with_logger_defs({LOGGER_NAME: progress_logger(progress)}), instance, say=say, poll=5.0,
            raise_on_error=False, run_id=run_id, tags=_arrival_days(now), run_config={"loggers": {LOGGER_NAME: {}}})
    progress.finish()
    outcome = DemoOutcome(success=result.success, warehouse=str(settings.warehouse_path()), now=now,
                          run_id=run_id, data=data, injected=injected, started_over=reason)
    evaluations = [e.asset_check_evaluation_data for e in result.all_events
                   if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]  # blocking failures too
    outcome.failed_checks = [f"{e.asset_key.to_user_string()}: {e.check_name} ({e.severity.value})"
                             for e in evaluations if not e.passed]
    built = {e.asset_key for e in result.get_asset_materialization_events()}
    outcome.not_built = sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys - built)
    if injected and outcome.failed_checks:
        _collect(outcome)  # expected: the checks caught the injected rows and held the graph back
        return outcome
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                outcome.errors.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}")
        return outcome
    _collect(outcome)
    return outcome


def _load_dagster(instance: dg.DagsterInstance | None) -> tuple[dg.JobDefinition, dg.DagsterInstance]:
    """The job `everything` of the platform's definitions, and the instance (DAGSTER_HOME's unless given)."""
    import dagster as dg

    from ..definitions import defs

    return defs().resolve_job_def("everything"), instance or dg.DagsterInstance.get()


# DuckDB's buffer pool for the demo's steps (the default: a quarter of RAM, up to 768 MB). The
# demo's tables fit; at scale 30 staging.events peaks at ~1.18 GB instead of ~1.51, same CPU.
DEMO_DUCKDB_MEMORY_LIMIT = "512MB"


@contextlib.contextmanager
def demo_duckdb_memory_limit():
    """$WAREHOUSE_DUCKDB_MEMORY_LIMIT set to `DEMO_DUCKDB_MEMORY_LIMIT` for the run, unless the
    user set it (their value wins); as it was afterwards."""
    from ..resources.warehouse import MEMORY_LIMIT_ENV

    if os.environ.get(MEMORY_LIMIT_ENV):
        yield
        return
    os.environ[MEMORY_LIMIT_ENV] = DEMO_DUCKDB_MEMORY_LIMIT
    try:
        yield
    finally:
        os.environ.pop(MEMORY_LIMIT_ENV, None)


def _arrival_days(now: datetime) -> dict[str, str]:
    """The arrival days to stage: from the day before `now` through today on the wall clock (the
    bus stamps events with the wall clock when they arrive; `now` may be pinned earlier)."""
    from ..partitions import day_of, range_tags

    wall = datetime.now(timezone.utc)
    return range_tags(day_of(now - timedelta(days=1)), day_of(max(now, wall)))


def _collect(outcome: DemoOutcome) -> None:
    import duckdb

    with duckdb.connect(outcome.warehouse, read_only=True) as conn:
        tables = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema not in ('ops') order by 1, 2").fetchall()
        for schema, table in tables:
            count = conn.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
            if schema == "quarantine":
                outcome.quarantined[table] = count
            else:
                outcome.table_rows[f"{schema}.{table}"] = count
        if ("marts", "segment_membership") in tables:
            sizes = conn.execute("select segment, count(*) from marts.segment_membership group by 1 order by 1").fetchall()
            outcome.segment_sizes = {k: v for k, v in sizes}
    staged = outcome.table_rows.get("staging.customers", 0)
    outcome.duplicates_merged = staged - outcome.table_rows.get("core.customers", staged)


def summary_table(outcome: DemoOutcome) -> str:
    from tabulate import tabulate

    parts = [
        "Rows per table:\n" + tabulate(sorted(outcome.table_rows.items()), headers=["table", "rows"]),
        "Quarantined rows (kept with their reason):\n"
        + tabulate(sorted(outcome.quarantined.items()) or [("-", 0)], headers=["source", "rows"]),
        f"Duplicates merged into golden customers: {outcome.duplicates_merged}",
        "Segment sizes:\n" + tabulate(sorted(outcome.segment_sizes.items()), headers=["segment", "members"]),
    ]
    if outcome.injected:
        parts += [
            "Injected bad rows: " + ", ".join(f"{k} {v}" for k, v in outcome.injected.items()),
            "Failed checks:\n  " + "\n  ".join(outcome.failed_checks or ["none"]),
            "Held back by a failed blocking check (not built in this run):\n  "
            + "\n  ".join(outcome.not_built or ["nothing"]),
        ]
    return "\n\n".join(parts)


def frame_of(table: str) -> pd.DataFrame:
    """Read one warehouse table (for tests and notebooks)."""
    import duckdb

    with duckdb.connect(str(settings.warehouse_path()), read_only=True) as conn:
        return conn.execute(f"select * from {table}").df()
