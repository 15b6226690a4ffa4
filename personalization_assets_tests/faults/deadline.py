"""In-process runs under a deadline, for the crash tests.

A run that misses its deadline fails the test with what it was doing (thread stacks, CPU time, the
pool's holders and waiters, its last events, the processes it started), and is stopped: its
threads, its Dagster runs and slots, and Dagster's compute-log helper processes. So a wedged run
cannot hold a slot, spin a CPU or leave processes under the tests after it.

Why signal handlers matter here: a process started in the background of a non-interactive shell
ignores SIGINT, and every in-process Dagster run on the main thread leaves SIGTERM with SIGINT's
handler (`dagster._utils.interrupts.capture_interrupts`), so SIGTERM is then ignored too, and so by
every process started afterwards. A run in a thread then starts compute-log `tail -F` processes
that ignore the SIGTERM Dagster ends them with, and waits 30 s for each of its two streams (then
fails with TimeoutExpired). `default_signal_handlers()` restores what a foreground process has.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from personalization_assets.resources.pool import FINISHED, slot_holders, waits
from personalization_assets_tests.conftest import foreground_signals

# An in-process run after a crash took 2.5-12 s at load 9-12 on 2 cores (four CPU burners beside
# the suite); no process start-up is inside this wait (the harness's `DEADLINE_S` covers those).
RUN_DEADLINE_S = 60
_DAGSTER_HELPERS = ("tail -F", "watch_orphans.py")  # compute-log mirrors Dagster starts per run


class RunCancelled(BaseException):
    """Raised inside a run's threads when it missed its deadline, so they stop instead of living on."""


@contextlib.contextmanager
def default_signal_handlers() -> Iterator[None]:
    """SIGINT and SIGTERM as a foreground Python process has them, while inside (main thread only)."""
    previous = foreground_signals()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(sig, handler)


class RunThread:
    """`start()`, an in-process run, in a daemon thread (like the demo's) with a deadline."""

    def __init__(self, start: Callable[[], Any], instance: dg.DagsterInstance, what: str):
        self.instance, self.what, self.outcome = instance, what, {}
        self.runs_before = {r.run_id for r in instance.get_runs()}
        self.threads_before = {t.ident for t in threading.enumerate()}
        self.children_before = set(_children())

        def work() -> None:
            try:
                self.outcome["value"] = start()
            except BaseException as exc:  # handed to the test's thread by result()
                self.outcome["error"] = exc

        self.thread = threading.Thread(target=work, name=f"run: {what}", daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def result(self, timeout: float = RUN_DEADLINE_S) -> Any:
        """What `start()` returned (or raised); AssertionError, after cleaning up, past `timeout`."""
        self.thread.join(max(0.0, self.started + timeout - time.monotonic()))
        if self.thread.is_alive():
            report = self.report()
            stopped = self.cancel()
            raise AssertionError(f"{self.what} did not finish within {timeout:.0f} s "
                                 f"({'stopped' if stopped else 'its thread could NOT be stopped'}).\n{report}")
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["value"]

    def stop(self) -> None:
        """For a test's `finally`: cancel the run if it still runs (nothing once it finished)."""
        if self.thread.is_alive():
            self.cancel()

    def report(self) -> str:
        lines = [f"after {time.monotonic() - self.started:.0f} s, load average "
                 f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; in this process SIGINT is "
                 f"{_handler(signal.SIGINT)}, SIGTERM {_handler(signal.SIGTERM)}"]
        frames = sys._current_frames()
        for thread in self._threads():
            lines.append(f"thread {thread.name!r} ({_thread_cpu_s(thread.native_id):.1f} s CPU), last frames:")
            frame = frames.get(thread.ident)
            lines += ["  " + line for line in "".join(traceback.format_stack(frame)[-8:]).splitlines()] if frame else []
        for pid, command in self._children().items():
            lines.append(f"process {pid} started by the run: {command[:100]}"
                         f"{' (IGNORES SIGTERM)' if _ignores_sigterm(pid) else ''}")
        try:
            holders = slot_holders(self.instance)
            lines += [f"pool {sorted(h.pools)}: {h.describe()}, steps waiting {sorted(h.waiting)}"
                      for h in holders.values()]
            lines += [f"waits: {line}" for line in waits(self.instance, holders=holders).values()]
        except Exception as exc:  # the report must not hide the timeout
            lines.append(f"pool state unreadable: {exc!r}")
        for run in self._runs():
            lines.append(f"run {run.run_id[:8]} ({run.job_name}) {run.status.value}; last events:")
            lines += [f"  {e.dagster_event_type.value if e.dagster_event_type else 'log'}: {(e.message or '')[:140]}"
                      for e in self.instance.all_logs(run.run_id)[-6:]]
        return "\n".join(lines)

    def cancel(self) -> bool:
        """Kill Dagster's helper processes the run started (a thread may wait for them), stop the
        run's threads, end its runs and free their slots; True once its threads stopped."""
        for pid, command in self._children().items():
            if any(helper in command for helper in _DAGSTER_HELPERS):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # reaped by the Popen that waits for it
        for thread in self._threads():  # raised at the next Python instruction, never inside C code
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(RunCancelled))
        deadline = time.monotonic() + 20
        for thread in self._threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        for run in self._runs():
            if run.status not in FINISHED:  # a run Dagster did not end itself on the exception
                self.instance.report_run_canceled(run, f"{self.what}: missed the test's deadline")
            self.instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        return not any(t.is_alive() for t in self._threads())

    def _runs(self) -> list[dg.DagsterRun]:
        return [r for r in self.instance.get_runs() if r.run_id not in self.runs_before]

    def _threads(self) -> list[threading.Thread]:
        """The run's thread and those it started (`execute_watched` runs the job in a second one)."""
        return [t for t in threading.enumerate() if t.ident not in self.threads_before and t.is_alive()]

    def _children(self) -> dict[int, str]:
        return {pid: cmd for pid, cmd in _children().items() if pid not in self.children_before}


def finish(start: Callable[[], Any], instance: dg.DagsterInstance, what: str,
           timeout: float = RUN_DEADLINE_S) -> Any:
    """What `start()` (an in-process run) returns, run in a thread cancelled past `timeout`."""
    return RunThread(start, instance, what).result(timeout)


def _children() -> dict[int, str]:
    """The live processes this one started: pid -> command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != os.getpid() or fields[0] == "Z":
                continue
            with open(f"/proc/{entry}/cmdline") as fh:
                found[int(entry)] = fh.read().replace("\0", " ").strip()
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
    return found


def _ignores_sigterm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            ignored = int(next(line.split()[1] for line in fh if line.startswith("SigIgn:")), 16)
    except (OSError, StopIteration):
        return False
    return bool(ignored & (1 << (signal.SIGTERM - 1)))


def _handler(sig: signal.Signals) -> str:
    handler = signal.getsignal(sig)
    return getattr(handler, "name", None) or getattr(handler, "__qualname__", repr(handler))


def _thread_cpu_s(native_id: int | None) -> float:
    try:
        with open(f"/proc/self/task/{native_id}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
