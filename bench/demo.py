"""Wall time, peak memory and time to the first lines of `personalization demo`, at the default
size and at 10x.

    python bench/demo.py [--scales 1 10]

Each run is a fresh subprocess with a fresh data dir, so the figures include seeding the sources,
materializing the whole graph and the summary, exactly as a user sees them. "first line" is the
first line the demo prints, "first source" the first seeded source, "first layer" the first layer
of the Dagster run that completes.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time


def run(scale: float) -> tuple[float, float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DAGSTER_HOME": os.path.join(tmp, "home")}
        cmd = [sys.executable, "-m", "personalization_assets.cli", "demo", "--scale", str(scale),
               "--data-dir", os.path.join(tmp, "data"), "--dagster-home", os.path.join(tmp, "home")]
        started = time.perf_counter()
        # A wrapper process per run, so RUSAGE_CHILDREN's peak is this run's alone (told on stderr).
        wrapper = ("import resource,subprocess,sys;"
                   "r=subprocess.run(sys.argv[1:],stderr=subprocess.DEVNULL);"
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,file=sys.stderr);sys.exit(r.returncode)")
        proc = subprocess.Popen([sys.executable, "-c", wrapper, *cmd], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        firsts: dict[str, float] = {}
        in_run = False
        for line in proc.stdout:
            at = time.perf_counter() - started
            firsts.setdefault("first line", at)
            if line.startswith("  ") and not in_run:
                firsts.setdefault("first source", at)
            in_run = in_run or line.startswith("Run ")
            if in_run and re.match(r"^  \w+ +\d+ of \d+ +assets", line):
                firsts.setdefault("first layer", at)
        err = proc.stderr.read()
        wall = time.perf_counter() - started
        if proc.wait() != 0:
            sys.exit(f"demo failed at scale {scale}: {err[-2000:]}")
        return wall, int(err.strip().splitlines()[-1]) / 1024, firsts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 10])
    args = parser.parse_args()
    print(f"{'scale':>6} {'wall s':>8} {'peak RSS MB':>12} {'first line s':>13} {'first source s':>15} "
          f"{'first layer s':>14}   (load average {os.getloadavg()[0]:.1f})")
    for scale in args.scales:
        wall, peak, firsts = run(scale)
        print(f"{scale:>6g} {wall:>8.1f} {peak:>12.0f} {firsts.get('first line', 0):>13.1f} "
              f"{firsts.get('first source', 0):>15.1f} {firsts.get('first layer', 0):>14.1f}")


if __name__ == "__main__":
    main()
