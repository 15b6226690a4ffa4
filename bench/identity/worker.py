"""One engine on one dataset in its own process, so peak RSS belongs to that run alone.

Usage: python -m bench.identity.worker {ours|splink} <input.parquet> <kind> <out.parquet>
Prints one JSON line: seconds (matching only, after loading) and peak_rss_mb (whole process).
"""

from __future__ import annotations

import json
import resource
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
        clusters = run_splink(df, kind)
        seconds = time.perf_counter() - t0
        clusters.to_parquet(out)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss, **extra}))


if __name__ == "__main__":
    main()
