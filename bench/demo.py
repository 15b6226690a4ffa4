"""Wall time, peak memory and time to the first lines of `personalization demo`, at the default
size and at 10x; with `--steps`, where the time and the memory go, step by step.

    python bench/demo.py [--scales 1 10] [--steps]

Each run is a fresh subprocess with a fresh data dir, so the figures include seeding the sources,
materializing the whole graph and the summary, exactly as a user sees them. "first line" is the
first line the demo prints, "first source" the first seeded source, "first layer" the first layer
of the Dagster run that completes. CPU is the user + system time of the demo process and its
children (the machine may be shared: wall time alone says little under load).

Memory is measured over the whole process tree: the demo seeds its sources in a child process.
"peak RSS MB" is the highest sum of the tree's resident sets, sampled from /proc every 0.2 s (a
peak shorter than that can be missed); "largest process MB" is the kernel's exact peak of the
single largest process (wait4's ru_maxrss, which covers the children the demo waited for).

`--steps` also prints, from the run's step stats in its Dagster instance, each step's wall time,
CPU time, peak RSS and the RSS right after it (the demo runs its steps one after another, in
process), costliest first, then again in run order with each step's start: where the run's RSS
rises and whether a step hands it back.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """(epoch seconds, RSS MB, CPU s) of a process and all its descendants (the demo seeds its
    sources in a child process), every `every` seconds, until the process exits. RSS is the sum
    over the tree's live processes; CPU adds the user + system time of the live processes and of
    the children they have waited for."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples = pid, every, []

    def run(self) -> None:
        while True:
            tree = _tree(self.pid)
            if tree is None:
                return
            rss = sum(_rss_mb(p) for p in tree)
            cpu = sum(_cpu_s(p) for p in tree)
            self.samples.append((time.time(), rss, cpu))
            time.sleep(self.every)

    def at(self, when: float) -> float:
        """RSS MB of the first sample at or after an epoch time (the last one if none)."""
        return next((s[1] for s in self.samples if s[0] >= when), self.samples[-1][1] if self.samples else 0.0)

    def within(self, start: float, end: float) -> tuple[float, float]:
        """Peak RSS MB and CPU s between two epoch times."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        before = [s for s in self.samples if s[0] < start][-1:] or inside[:1]
        after = [s for s in self.samples if s[0] > end][:1] or inside[-1:]
        peak = max((s[1] for s in inside + after), default=0.0)
        cpu = (after[0][2] - before[0][2]) if before and after else 0.0
        return peak, cpu


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1]), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _tree(root: int) -> list[int] | None:
    """`root` and its live descendants, or None once `root` has exited (or is a zombie)."""
    stat = _stat(root)
    if stat is None or stat[0] == "Z":
        return None
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _stat(int(name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0) / 1024
    except OSError:
        return 0.0


def _cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime (the last two: children waited for) of one process."""
    fields = _stat(pid)
    return sum(int(v) for v in fields[11:15]) / TICK if fields else 0.0


def run(scale: float, steps: bool = False) -> tuple[float, float, float, float, dict[str, float]]:
    """Wall s, peak RSS MB of the process tree, CPU s, largest process's peak RSS MB, first lines."""
    with tempfile.TemporaryDirectory() as tmp:
        home = os.path.join(tmp, "home")
        env = {**os.environ, "DAGSTER_HOME": home}
        cmd = [sys.executable, "-m", "personalization_assets.cli", "demo", "--scale", str(scale),
               "--data-dir", os.path.join(tmp, "data"), "--dagster-home", home]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        sampler = Sampler(proc.pid)
        sampler.start()
        firsts: dict[str, float] = {}
        in_run, run_id, lines = False, None, []
        for line in proc.stdout:
            at = time.perf_counter() - started
            lines.append(line)
            firsts.setdefault("first line", at)
            if line.startswith("  ") and not in_run:
                firsts.setdefault("first source", at)
            if line.startswith("Run ") and not in_run:
                run_id = line.split()[1]
                firsts["run start"] = at
            in_run = in_run or line.startswith("Run ")
            if in_run and re.match(r"^  \w+ +\d+ of \d+ +assets", line):
                firsts.setdefault("first layer", at)
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)  # CPU and largest peak RSS of the demo and its children
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"demo failed at scale {scale}: {err[-2000:]}")
        if steps:
            print("".join(lines), flush=True)
            _print_steps(home, run_id, sampler)
        sampler.join()
        tree_peak = max((sample[1] for sample in sampler.samples), default=0.0)
        return wall, tree_peak, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, firsts


def _print_steps(home: str, run_id: str | None, sampler: Sampler) -> None:
    import dagster as dg

    os.environ["DAGSTER_HOME"] = home
    with dg.DagsterInstance.get() as instance:
        stats = [s for s in instance.get_run_step_stats(run_id) if s.start_time and s.end_time]
    rows = []
    for s in stats:
        peak, cpu = sampler.within(s.start_time, s.end_time)
        rows.append((s.end_time - s.start_time, cpu, peak, s.step_key, s.start_time, sampler.at(s.end_time)))
    print(f"{'step':<58} {'wall s':>7} {'CPU s':>7} {'peak RSS MB':>12} {'RSS after MB':>13}")
    for wall, cpu, peak, key, _, after in sorted(rows, reverse=True):
        print(f"{key:<58} {wall:>7.1f} {cpu:>7.1f} {peak:>12.0f} {after:>13.0f}")
    if stats:
        first, last = min(s.start_time for s in stats), max(s.end_time for s in stats)
        print(f"{'(all steps, first start to last end)':<58} {last - first:>7.1f} "
              f"{sampler.within(first, last)[1]:>7.1f} {sampler.within(first, last)[0]:>12.0f}")
    # in run order: where the RSS rises and whether the step hands it back
    start = min((r[4] for r in rows), default=0.0)
    print(f"\n{'step, in run order':<58} {'start s':>7} {'wall s':>7} {'peak RSS MB':>12} {'RSS after MB':>13}")
    for wall, cpu, peak, key, started, after in sorted(rows, key=lambda r: r[4]):
        print(f"{key:<58} {started - start:>7.1f} {wall:>7.1f} {peak:>12.0f} {after:>13.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--steps", action="store_true", help="print each step's wall time, CPU time and peak RSS")
    args = parser.parse_args()
    header = (f"{'scale':>6} {'wall s':>8} {'CPU s':>7} {'peak RSS MB':>12} {'largest process MB':>19} {'first line s':>13} "
              f"{'first source s':>15} {'run start s':>12} {'first layer s':>14}")
    results = []
    for scale in args.scales:
        load = os.getloadavg()
        wall, peak, cpu, largest, firsts = run(scale, args.steps)
        results.append((scale, wall, cpu, peak, largest, firsts, load, os.getloadavg()))
    print(header)
    for scale, wall, cpu, peak, largest, firsts, before, after in results:
        print(f"{scale:>6g} {wall:>8.1f} {cpu:>7.1f} {peak:>12.0f} {largest:>19.0f} {firsts.get('first line', 0):>13.1f} "
              f"{firsts.get('first source', 0):>15.1f} {firsts.get('run start', 0):>12.1f} "
              f"{firsts.get('first layer', 0):>14.1f}   (load average {before[0]:.1f} before, {after[0]:.1f} after,"
              f" {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
