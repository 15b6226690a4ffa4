"""One engine on one dataset in its own process, so peak RSS belongs to that run alone.

Usage: python -m bench.identity.worker {ours|splink} <input.parquet> <kind> <out.parquet>
Prints one JSON line: seconds (matching only, after loading) and peak_rss_mb (whole process).
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd


def main() -> None:
    engine, path, kind, out = sys.argv[1:5]
    df = pd.read_parquet(path)
    extra = {}
    if engine == "ours":
        from personalization_assets.identity import resolve

        t0 = time.perf_counter()
        res = resolve(df)
        seconds = time.perf_counter() - t0
        res.crosswalk[["record_id", "customer_key"]].rename(
            columns={"record_id": "rec_id", "customer_key": "cluster"}).to_parquet(out)
        extra = {"candidate_pairs": res.stats["candidate_pairs"], "em_iterations": res.model.iterations,
                 "stage_seconds": res.stats["stage_seconds"]}
    else:
        from bench.identity.splink_runner import run_splink

        t0 = time.perf_counter()
        clusters, pairs = run_splink(df, kind)
        seconds = time.perf_counter() - t0
        clusters.to_parquet(out)
        pairs.to_parquet(out.replace(".parquet", "-pairs.parquet"))
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), **extra}))


def peak_rss_mb() -> float:
    """Peak RSS of this process image (VmHWM). Not ru_maxrss: Linux carries that over from the
    forked parent through exec, so it would report the bench driver's own size."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak RSS needs Linux")


if __name__ == "__main__":
    main()
