"""Crash-injection harness: run `child` in its own process, stop it at a fault point, `kill -9` it."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg

from personalization_assets.resources.faults import FAULT_ENV

REPO = Path(__file__).resolve().parents[2]
# Waits that include a Dagster process start-up: a child reached its fault point 13-29 s after its
# start at load 9-12 on 2 cores (four CPU burners beside the suite), so 60 s left too thin a margin.
DEADLINE_S = 120


class Child:
    """A child run whose stderr lines are collected as they come."""

    def __init__(self, which: str, env: dict[str, str], fault: str | None = None, config: str | None = None):
        env = {**os.environ, **env}
        env.pop(FAULT_ENV, None)
        if fault:
            env[FAULT_ENV] = fault
        args = [sys.executable, "-m", "personalization_assets_tests.faults.child", which] + ([config] if config else [])
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float = DEADLINE_S) -> str:
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        self.kill()
        raise AssertionError(f"child never printed {prefix!r} (waited {time.monotonic() - started:.0f} s, load "
                             f"{os.getloadavg()[0]:.1f}, exit {self.proc.returncode}); it printed:\n"
                             + "\n".join(self.seen[-30:]))

    def kill(self) -> None:
        """`kill -9`, and reap it (a zombie would still look alive)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE_S)

    def finish(self, timeout: float = DEADLINE_S) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()


def slots_taken(instance: dg.DagsterInstance, pool: str = "warehouse_writer") -> list[tuple[str, str]]:
    info = instance.event_log_storage.get_concurrency_info(pool)
    return [(s.run_id, s.step_key) for s in info.claimed_slots]


@contextlib.contextmanager
def live_slot_holder(instance: dg.DagsterInstance, pool: str = "warehouse_writer"):
    """A run in a thread of this process that holds `pool`'s slot (its process is alive) until the
    block ends; yields its run id. It then finishes and frees the slot."""
    release = threading.Event()

    @dg.asset(key=["ops", "heartbeat"], pool=pool)
    def slot_holder():
        release.wait(DEADLINE_S)

    holder = threading.Thread(target=lambda: dg.materialize([slot_holder], instance=instance), daemon=True)
    holder.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not slots_taken(instance, pool) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert slots_taken(instance, pool), "the holder never took the slot"
        (run_id, _), = slots_taken(instance, pool)
        yield run_id
    finally:
        release.set()
        holder.join(DEADLINE_S)


def environment(tmp_path: Path) -> dict[str, str]:
    """A Dagster home with the project's dagster.yaml, and a warehouse file, under `tmp_path`."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    return {"DAGSTER_HOME": str(home), "PERSONALIZATION_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
            "PERSONALIZATION_DATA_DIR": str(tmp_path / "data"), "DAGSTER_DEPLOYMENT": "local"}
