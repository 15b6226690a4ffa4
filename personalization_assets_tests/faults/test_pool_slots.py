"""Finding 1 of issue 17: a run killed in the `warehouse_writer` pool must not wedge later runs.

Each test kills a real child process (`kill -9`) while it holds the pool's only slot.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest

from personalization_assets.definitions import defs
from personalization_assets.resources.pool import FINISHED, execute_watched, process_alive, waits
from personalization_assets.sensors import pool_slot_keeper

from . import child as runs
from .deadline import RunThread, finish
from .harness import DEADLINE_S, REPO, Child, live_slot_holder, slots_taken

POOL = "warehouse_writer"


def _until(predicate, timeout: float = DEADLINE_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _share_running(pid: int, samples: int = 30) -> float:
    """How often the process's main thread is on (or waiting for) a CPU, sampled over 3 s; CPU
    time would not tell a spinner from a sleeper on a loaded machine."""
    running = 0
    for _ in range(samples):
        running += open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "R"
        time.sleep(3 / samples)
    return running / samples


def _killed_holder(env, instance) -> str:
    child = Child("pool", env, fault="step_start@ops.heartbeat")
    child.wait_for("FAULT step_start@ops.heartbeat")
    child.kill()
    (run_id, step), = slots_taken(instance)  # the wedge: the slot outlives its process
    assert step == "ops__heartbeat"
    return run_id


def test_a_run_killed_holding_the_slot_does_not_wedge_the_next_run(env, instance):
    dead = _killed_holder(env, instance)
    said = []
    result = finish(lambda: runs.run("pool", instance=instance, say=said.append), instance,  # in process, like the demo
                    f"the next run (behind the slot of the killed run {dead[:8]})")
    assert result.success
    assert slots_taken(instance) == []
    assert any(line.startswith(f"freed the pool slots of run {dead[:8]}") and "gone" in line for line in said)
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE  # the UI says why


def test_dagster_asset_materialize_with_no_daemon_is_not_wedged_by_a_dead_run(env, instance):
    """The README's replay command: `dagster asset materialize` runs with the platform's executor in
    its own process, with no daemon and no sensor to free the dead run's slot."""
    dead = _killed_holder(env, instance)
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "--select", "ops/heartbeat", "-m",
               "personalization_assets_tests.faults.child", "-a", "cli_definitions"]
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"dagster asset materialize is wedged behind the slot of the killed run {dead[:8]}")
    assert proc.returncode == 0, out[-2000:]
    assert slots_taken(instance) == []
    freed = [e.message for r in instance.get_runs() for e in instance.all_logs(r.run_id)
             if e.message and e.message.startswith(f"freed the pool slots of run {dead[:8]}")]
    assert freed and "gone" in freed[0]  # the run says why it could go on


def test_the_sensor_tells_a_waiting_run_who_holds_the_slot_and_frees_it_when_the_holder_dies(env, instance):
    child = Child("pool", env, fault="step_start@ops.heartbeat")
    child.wait_for("FAULT step_start@ops.heartbeat")
    (holder, _), = slots_taken(instance)

    def plain_run():  # a run as `dagster dev` launches it: no watchdog of ours around it
        return runs.job("pool").execute_in_process(instance=instance, run_config=runs.QUIET, raise_on_error=False)

    waiter = RunThread(plain_run, instance, f"the run waiting for the slot of run {holder[:8]}")
    try:
        assert _until(lambda: waits(instance)), "the second run never queued for the slot"
        first = pool_slot_keeper(dg.build_sensor_context(instance=instance))
        (waiting_run, line), = waits(instance).items()
        assert f"waits for pool {POOL}: slot held by run {holder[:8]}" in line and "alive" in line
        told = [e.message for e in instance.all_logs(waiting_run, of_type=dg.DagsterEventType.ENGINE_EVENT)]
        assert f"Waiting: {line}" in told
        assert slots_taken(instance)[0][0] == holder  # a live holder keeps its slot

        child.kill()
        second = pool_slot_keeper(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert f"freed 1 dead run(s): run {holder[:8]}" in second.skip_reason.skip_message
        assert waiter.result().success
        assert slots_taken(instance) == []
    finally:
        child.kill()
        waiter.stop()  # a failed assertion above must not leave it spinning in Dagster's slot wait


def test_a_waiting_run_says_what_it_waits_for_and_stops_on_sigterm(env, instance):
    with live_slot_holder(instance, POOL) as holder_run:
        child = Child("pool", env)
        line = child.wait_for("waiting: pool warehouse_writer is full")
        assert f"slot held by run {holder_run[:8]}" in line and "Ctrl-C stops this run" in line
        assert _share_running(child.proc.pid) < 0.5  # waits asleep (measured 0.1-0.2); a spinner is at 1.0
        started = time.monotonic()
        child.proc.send_signal(signal.SIGTERM)
        assert child.finish(timeout=20) == 130
        assert time.monotonic() - started < 20
        assert "INTERRUPTED" in child.seen + [child.lines.get(timeout=5)]
    assert all(r.status in FINISHED for r in instance.get_runs(filters=dg.RunsFilter(job_name="pool")))
    assert slots_taken(instance) == []


def test_sigterm_during_a_run_cancels_it_and_frees_its_slot(instance):
    """In process, like the demo: the signal reaches the watching thread, not Dagster's executor."""
    release = threading.Event()

    @dg.asset(key=["ops", "heartbeat"], pool=POOL)
    def terminated_writer():
        os.kill(os.getpid(), signal.SIGTERM)  # what `kill <demo pid>` does, while the step holds the slot
        release.wait(DEADLINE_S)

    job = dg.Definitions(assets=[terminated_writer], jobs=[dg.define_asset_job("terminated")]).resolve_job_def(
        "terminated")
    try:
        with pytest.raises(KeyboardInterrupt):
            execute_watched(job, instance, say=lambda line: None, poll=0.2, run_config=runs.QUIET)
        (run,) = instance.get_runs(filters=dg.RunsFilter(job_name="terminated"))
        assert run.status == dg.DagsterRunStatus.CANCELED
        assert slots_taken(instance) == []
    finally:
        release.set()


def test_every_step_that_opens_the_warehouse_is_in_the_pool():
    """DuckDB allows one process per file: an asset check reading it outside the pool failed on
    the file lock while a writer ran."""
    definitions = defs()
    outside = []
    for check in definitions.asset_checks or []:
        if check.node_def.pool != POOL:  # every check loads its asset or queries the warehouse
            outside.append(check.node_def.name)
    for asset in definitions.assets or []:
        if isinstance(asset, dg.AssetsDefinition) and asset.is_executable and "warehouse" in asset.required_resource_keys:
            if asset.node_def.pool != POOL:
                outside.append(asset.node_def.name)
    assert definitions.asset_checks and outside == []


def test_a_process_counts_as_alive_only_while_it_runs_and_is_not_a_reused_pid():
    now = time.time()
    assert process_alive(os.getpid(), now)
    assert not process_alive(os.getpid(), now - 10 ** 6)  # our pid, but named by an event before we started
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    assert not process_alive(exited.pid, now)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    assert _until(lambda: open(f"/proc/{zombie.pid}/stat").read().split(")")[1].split()[0] == "Z", 10)
    assert not process_alive(zombie.pid, now)  # killed but not reaped yet: not alive
    zombie.wait()


def test_dagster_dev_frees_slots_of_ended_runs_and_runs_the_slot_keeper(tmp_path):
    """With `dagster dev`, the daemon frees the slots of ended runs (failing a run does not), and the
    sensor frees those of runs whose process is gone; both are on without anyone switching them on."""
    from .harness import environment

    home = environment(tmp_path)["DAGSTER_HOME"]
    with dg.DagsterInstance.from_config(home) as instance:
        assert instance.run_monitoring_enabled
        assert 0 < instance.run_monitoring_settings["free_slots_after_run_end_seconds"] <= 60
    keeper = next(s for s in defs().sensors if s.name == "pool_slot_keeper")
    assert keeper.default_status == dg.DefaultSensorStatus.RUNNING and keeper.minimum_interval_seconds <= 30


def test_a_briefly_locked_warehouse_is_waited_for_and_a_stuck_lock_is_named(tmp_path):
    """DuckDB refuses a second process at once; a step meeting a short-lived one (a CLI command)
    retries instead of failing, and a lock that stays gets an error naming the way out."""
    from personalization_assets.resources.warehouse import DuckDBWarehouse

    database = str(tmp_path / "warehouse.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(float(sys.argv[2]))", database, "3"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with DuckDBWarehouse(database=database).connect() as conn:  # waits for the holder to exit
        assert conn.scalar("select 42") == 42
    holder.wait()

    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(60)", database], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        from personalization_assets import warehouse

        with pytest.raises(RuntimeError, match=f"stayed locked by another process.*PID {holder.pid}.*warehouse_writer"):
            warehouse._connect_duckdb(__import__("duckdb"), database, wait_s=0.5)
    finally:
        holder.kill()
        holder.wait()


def test_in_production_only_ended_runs_lose_their_slots(env, instance):
    """Run workers may live on other hosts in production, where a pid says nothing."""
    from personalization_assets.resources.pool import free_dead_run_slots, slot_holders

    dead = _killed_holder(env, instance)
    assert free_dead_run_slots(instance, slot_holders(instance, by_process=False)) == []
    assert slots_taken(instance)[0][0] == dead
    instance.report_run_failed(instance.get_run_by_id(dead), "marked failed by hand")
    assert slots_taken(instance)[0][0] == dead  # failing a run does not free its slot ...
    freed = free_dead_run_slots(instance, slot_holders(instance, by_process=False))
    assert [h.run_id for h in freed] == [dead] and slots_taken(instance) == []  # ... this does
