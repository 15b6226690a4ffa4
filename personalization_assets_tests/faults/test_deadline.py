"""The crash tests' deadline: a run that misses it fails the test saying what it waited for, and
is stopped, so it cannot hold a slot or spin a CPU under the tests after it; and a run in a thread
is not held up by signal handlers a background launch left (`deadline.py`)."""

import signal
import time

import dagster as dg
import pytest

from . import child as runs
from .deadline import RunThread, default_signal_handlers, finish
from .harness import Child, live_slot_holder, slots_taken

POOL = "warehouse_writer"


@dg.asset
def note() -> int:
    """One small in-process step, with compute-log capture like every run."""
    return 1


def test_a_wedged_run_fails_saying_what_it_waits_for_and_is_stopped(env, instance):
    with live_slot_holder(instance, POOL) as kept:
        before = {r.run_id for r in instance.get_runs()}

        def wedged():  # no watchdog of ours: Dagster's own slot wait, which never gives up
            return runs.job("pool").execute_in_process(instance=instance, run_config=runs.QUIET)

        waiter = RunThread(wedged, instance, "the wedged run")
        with pytest.raises(AssertionError) as failed:
            waiter.result(timeout=3)
        message = str(failed.value)
        assert "the wedged run did not finish within 3 s (stopped)" in message
        assert f"waits: step ops__heartbeat waits for pool {POOL}: slot held by run {kept[:8]}" in message
        assert "thread 'run: the wedged run'" in message and "s CPU), last frames:" in message
        assert not waiter.thread.is_alive()
        (ended,) = [r for r in instance.get_runs() if r.run_id not in before]
        assert ended.status == dg.DagsterRunStatus.FAILURE  # ended by the RunCancelled raised in its thread
        assert [run for run, _ in slots_taken(instance)] == [kept]  # the live holder keeps its slot
    assert slots_taken(instance) == []


def test_a_run_that_finishes_in_time_returns_its_result_or_raises_its_error(instance):
    assert finish(lambda: 42, instance, "a quick run") == 42
    with pytest.raises(ZeroDivisionError):
        finish(lambda: 1 / 0, instance, "a failing run")


def test_a_run_in_a_thread_is_not_held_up_by_a_sigint_ignored_at_launch(instance):
    """The cause of the faults tests' 60 s timeouts in a full suite started in the background
    (`pytest &` ignores SIGINT): a run on the main thread leaves SIGTERM ignored, then a run in a
    thread waited 2 x 30 s for compute-log processes that ignore SIGTERM, and failed."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job of a script
    try:
        assert dg.materialize([note], instance=instance).success  # on the main thread
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # Dagster copied SIGINT's handler
        with default_signal_handlers():
            started = time.monotonic()
            result = finish(lambda: dg.materialize([note], instance=instance), instance, "a run in a thread",
                            timeout=25)  # held up, it takes 60 s
            assert result.success and time.monotonic() - started < 25
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # put back as found
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_a_child_that_never_reaches_its_fault_point_fails_the_wait_and_is_killed(env):
    child = Child("pool", env, fault="step_start@ops.nowhere")  # no such step: it runs to the end
    with pytest.raises(AssertionError, match=r"child never printed 'FAULT step_start@ops.nowhere' \(waited"):
        child.wait_for("FAULT step_start@ops.nowhere", timeout=2)
    assert child.proc.returncode is not None  # killed and reaped, not left running
