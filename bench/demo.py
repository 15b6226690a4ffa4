"""Wall time and peak memory of `personalization demo` at the default size and at 10x.

    python bench/demo.py [--scales 1 10]

Each run is a fresh subprocess with a fresh data dir, so the figures include seeding the sources,
materializing the whole graph and the summary, exactly as a user sees them.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time


def run(scale: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DAGSTER_HOME": os.path.join(tmp, "home")}
        cmd = [sys.executable, "-m", "personalization_assets.cli", "demo", "--scale", str(scale),
               "--data-dir", os.path.join(tmp, "data"), "--dagster-home", os.path.join(tmp, "home")]
        started = time.perf_counter()
        # A wrapper process per run, so RUSAGE_CHILDREN's peak is this run's alone.
        wrapper = ("import resource,subprocess,sys;"
                   "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL);"
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);sys.exit(r.returncode)")
        out = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if out.returncode != 0:
            sys.exit(f"demo failed at scale {scale}: {out.stderr[-2000:]}")
        return wall, int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 10])
    args = parser.parse_args()
    print(f"{'scale':>6} {'wall s':>8} {'peak RSS MB':>12}")
    for scale in args.scales:
        wall, peak = run(scale)
        print(f"{scale:>6g} {wall:>8.1f} {peak:>12.0f}")


if __name__ == "__main__":
    main()
