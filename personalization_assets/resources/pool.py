"""Pool slots held by runs that no longer run: find them, free them, and say who waits for whom.

Dagster frees a step's pool slot when the step ends. A run whose process dies (`kill -9`, the OOM
killer, a closed laptop) never ends its steps, so its slot in `warehouse_writer` stays taken and
every later step of the pool waits forever. Marking the run failed does not help, and the daemon's
`free_slots_after_run_end_seconds` needs both the daemon and a finished run; in-process runs (the
demo, tests) have neither.

A run is alive while a process that executes it still exists: every Dagster event records the pid
of the process that wrote it, so the run's RUN_START (its orchestrating process) and the holding
step's STEP_START (the process running the step) name the candidates. Pids are only meaningful on
this host, which is where the DuckDB warehouse, and so every run that writes it, lives; with
`by_process=False` (production, where runs may live on other hosts) only ended runs are freed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.executor_definition import IN_PROC_CONFIG, _core_in_process_executor_creation
from dagster._core.executor.in_process import InProcessExecutor  # Dagster 1.13 (pinned): subclassed below

FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
_PROCESS_EVENTS = {dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_START}
# A process that started more than this after the event naming its pid is a reused pid.
_PID_REUSE_SLACK_S = 2.0


@dataclass
class SlotHolder:
    """A run that holds (or queues for) slots of a pool, and whether it can still release them."""

    run_id: str
    pools: set[str] = field(default_factory=set)
    steps: set[str] = field(default_factory=set)  # steps holding a slot
    waiting: set[str] = field(default_factory=set)  # steps queued for a slot
    job: str = "?"
    status: str = "missing"
    alive: bool = False
    why: str = ""

    def describe(self) -> str:
        steps = ", ".join(sorted(self.steps)) or "no step"
        return f"run {self.run_id[:8]} ({self.job}, step {steps}, {self.status}: {self.why})"


def process_alive(pid: int, since: float) -> bool:
    """True while `pid` runs and is the process that existed at `since` (epoch seconds)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    stat = _proc_stat(pid)
    if stat is None:  # no /proc (macOS): existence is all we know
        return True
    state, started = stat
    return state not in ("Z", "X") and started <= since + _PID_REUSE_SLACK_S


def _proc_stat(pid: int) -> tuple[str, float] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as fh:
            boot = next(float(line.split()[1]) for line in fh if line.startswith("btime"))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def slot_holders(instance: dg.DagsterInstance, by_process: bool = True) -> dict[str, SlotHolder]:
    """Every run holding or queued for a slot of any pool, with its liveness."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    holders: dict[str, SlotHolder] = {}
    for pool in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(pool)
        for slot in info.claimed_slots:
            holder = holders.setdefault(slot.run_id, SlotHolder(slot.run_id))
            holder.pools.add(pool)
            holder.steps.add(slot.step_key)
        claimed = {(s.run_id, s.step_key) for s in info.claimed_slots}
        for step in info.pending_steps:
            holder = holders.setdefault(step.run_id, SlotHolder(step.run_id))
            holder.pools.add(pool)
            if (step.run_id, step.step_key) not in claimed:
                holder.waiting.add(step.step_key)
    for holder in holders.values():
        _judge(instance, holder, by_process)
    return holders


def _judge(instance: dg.DagsterInstance, holder: SlotHolder, by_process: bool) -> None:
    run = instance.get_run_by_id(holder.run_id)
    if run is None:
        holder.why = "the run no longer exists"
        return
    holder.job, holder.status = run.job_name, run.status.value
    if run.status in FINISHED:
        holder.why = "the run has ended"
        return
    if not by_process:
        holder.alive, holder.why = True, "running (its process may be on another host)"
        return
    steps = holder.steps | holder.waiting
    processes = {(e.dagster_event.pid, e.timestamp) for e in instance.all_logs(holder.run_id, of_type=_PROCESS_EVENTS)
                 if e.dagster_event and e.dagster_event.pid and (e.step_key is None or e.step_key in steps)}
    if not processes:  # claimed before any event we can judge by: never free it on a guess
        holder.alive, holder.why = True, "no process recorded yet"
        return
    living = sorted({pid for pid, since in processes if process_alive(pid, since)})
    holder.alive = bool(living)
    holder.why = (f"process {', '.join(map(str, living))} alive" if living
                  else f"process {', '.join(str(p) for p in sorted({p for p, _ in processes}))} gone")


def free_dead_run_slots(instance: dg.DagsterInstance, holders: dict[str, SlotHolder] | None = None,
                        ) -> list[SlotHolder]:
    """Free every slot (and queue place) of runs that can no longer release them; a run whose
    process died is marked failed, so the UI and the next run see why. Returns what was freed."""
    freed = []
    for holder in (slot_holders(instance) if holders is None else holders).values():
        if holder.alive:
            continue
        instance.event_log_storage.free_concurrency_slots_for_run(holder.run_id)
        run = instance.get_run_by_id(holder.run_id)
        if run is not None and run.status not in FINISHED:
            instance.report_run_failed(run, f"Process of the run is gone ({holder.why}); freed its slots in "
                                            f"pool {', '.join(sorted(holder.pools))} so later runs can proceed.")
        freed.append(holder)
    return freed


def waits(instance: dg.DagsterInstance, run_id: str | None = None,
          holders: dict[str, SlotHolder] | None = None) -> dict[str, str]:
    """Per waiting run (or only `run_id`): one line naming the pool and the runs holding it."""
    holders = slot_holders(instance) if holders is None else holders
    lines = {}
    for waiter in holders.values():
        if not waiter.waiting or (run_id is not None and waiter.run_id != run_id):
            continue
        for pool in sorted(waiter.pools):
            owners = [h.describe() for h in holders.values() if h.steps and pool in h.pools and h is not waiter]
            if owners:
                lines[waiter.run_id] = (f"step {', '.join(sorted(waiter.waiting))} waits for pool {pool}: "
                                        f"slot held by {'; '.join(owners)}")
    return lines


def execute_watched(job: dg.JobDefinition, instance: dg.DagsterInstance, say=print, poll: float = 1.0,
                    **kwargs) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process` for a command line: frees the slots of dead runs, says what it waits
    for while it waits, stops on Ctrl-C or SIGTERM, and keeps no output values (`execute_uncaptured`).

    Dagster's in-process executor ignores both signals while a step waits for a slot, and spins a
    CPU doing so. So the run starts only once its pools have a free slot (waiting here, asleep), and
    it executes in a worker thread while this thread keeps the signals and watches the pools.
    """
    pools = {getattr(node, "pool", None) for node in job.graph.node_defs} - {None}
    run_id = kwargs.pop("run_id", None) or str(uuid.uuid4())
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = execute_uncaptured(job, instance, run_id, **kwargs)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"run-{run_id[:8]}", daemon=True)
    with _sigterm_as_interrupt():
        _wait_for_free_slots(instance, pools, say, poll)
        worker.start()
        try:
            _watch(worker, instance, run_id, say, poll)
        except KeyboardInterrupt:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.status not in FINISHED:
                instance.report_run_canceled(run, "Interrupted (Ctrl-C or SIGTERM) by the user.")
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def execute_uncaptured(job: dg.JobDefinition, instance: dg.DagsterInstance, run_id: str, *,
                       run_config: dict | None = None, tags: dict | None = None,
                       raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process(...)` without its output capture. `execute_in_process` keeps every
    step's output value until the run ends (for `output_for_node`): in one run of the whole graph,
    every frame an asset handed to the IO manager (core.customers' golden records, ...) stayed alive
    through all later steps. A command line reads the run's events, never output values. The same
    calls as `JobDefinition.execute_in_process` of Dagster 1.13 (pinned), capture off."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.execute_in_process import (
        core_execute_in_process,
        merge_run_tags,
        type_check_and_normalize_args,
    )

    run_config, _, _, resource_defs, _, input_values = type_check_and_normalize_args(run_config=run_config)
    ephemeral = job.as_ephemeral_job(resource_defs=resource_defs, input_values=input_values)
    return core_execute_in_process(
        job=InMemoryJob(job_def=ephemeral), run_config=run_config, instance=instance,
        output_capturing_enabled=False, raise_on_error=raise_on_error, run_id=run_id,
        run_tags=merge_run_tags(job_def=job, partition_key=None, tags=tags, asset_selection=[],
                                instance=instance, run_config=run_config),
        asset_selection=frozenset())


def _wait_for_free_slots(instance: dg.DagsterInstance, pools: set[str], say, poll: float) -> None:
    said = None
    while True:
        holders = slot_holders(instance)
        for holder in free_dead_run_slots(instance, holders):
            say(f"freed the pool slots of {holder.describe()}")
        full = sorted(pool for pool in pools if _full(instance, pool))
        if not full:
            return
        owners = "; ".join(h.describe() for h in holders.values() if h.alive and h.steps and h.pools & set(full))
        line = f"waiting: pool {', '.join(full)} is full, slot held by {owners or 'a run'}. Ctrl-C stops this run."
        if line != said:
            say(line)
        said = line
        time.sleep(poll)


def _full(instance: dg.DagsterInstance, pool: str) -> bool:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or pool not in storage.get_concurrency_keys():
        return False
    info = storage.get_concurrency_info(pool)
    return info.limit is not None and len(info.claimed_slots) >= info.limit


def _watch(worker: threading.Thread, instance: dg.DagsterInstance, run_id: str, say, poll: float) -> None:
    said = None
    while True:
        worker.join(poll)
        if not worker.is_alive():
            return
        holders = slot_holders(instance)
        for holder in free_dead_run_slots(instance, holders):
            say(f"freed the pool slots of {holder.describe()}")
        line = waits(instance, run_id, {k: h for k, h in holders.items() if h.alive}).get(run_id)
        if line and line != said:
            say(f"waiting: {line}. Ctrl-C stops this run.")
        said = line


class _WatchedInProcessExecutor(InProcessExecutor):
    """Dagster's in-process executor, for runs that no command of ours watches (`dagster asset
    materialize`, runs the daemon launches): before the steps, and every `poll` seconds while they
    run or wait for a slot, the slots of dead runs are freed (by process only in the local
    deployment, where every run that writes the DuckDB file lives), and a waiting run's log says
    which run holds the slot."""

    poll = 2.0

    def execute(self, plan_context, execution_plan):
        from .. import settings

        instance, run = plan_context.instance, plan_context.dagster_run
        by_process = settings.deployment() == "local"
        stop = threading.Event()

        def keep() -> None:
            said = None
            while not stop.wait(self.poll):
                try:
                    holders = slot_holders(instance, by_process)
                    for holder in free_dead_run_slots(instance, holders):
                        instance.report_engine_event(f"freed the pool slots of {holder.describe()}", run)
                    line = waits(instance, run.run_id, {k: h for k, h in holders.items() if h.alive}).get(run.run_id)
                    if line and line != said:
                        instance.report_engine_event(f"Waiting: {line}", run)
                    said = line
                except Exception as exc:  # the watchdog must never fail the run it watches
                    instance.report_engine_event(f"pool watchdog: {exc.__class__.__name__}: {exc}", run)

        for holder in free_dead_run_slots(instance, slot_holders(instance, by_process)):
            instance.report_engine_event(f"freed the pool slots of {holder.describe()}", run)
        watchdog = threading.Thread(target=keep, name=f"pool-watchdog-{run.run_id[:8]}", daemon=True)
        watchdog.start()
        try:
            yield from super().execute(plan_context, execution_plan)
        finally:
            stop.set()


@dg.executor(name="in_process", config_schema=IN_PROC_CONFIG)
def watched_in_process_executor(init_context) -> InProcessExecutor:
    """`dg.in_process_executor` with the pool watchdog (`_WatchedInProcessExecutor`)."""
    plain = _core_in_process_executor_creation(init_context.executor_config)
    return _WatchedInProcessExecutor(plain.retries, plain.step_dependency_config, plain.marker_to_close)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
