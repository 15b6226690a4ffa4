"""One engine on one dataset in its own process, so peak RSS belongs to that run alone.

Usage: python -m bench.identity.worker {ours|ours-inc|ours-state|splink} <input.parquet> <kind> <out.parquet>
Prints one JSON line: seconds (matching only, after loading) and peak_rss_mb (whole process).

``ours-state`` resolves the input and saves the run's state (crosswalk, evidence with the model,
golden records) beside ``out``; ``ours-inc`` loads that state (``<out>`` of the state run is
passed as ``kind``) and times one incremental run on the input. Its peak RSS includes loading
the state, as a real run has to.
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
    if engine in ("ours", "ours-inc", "ours-state"):
        from personalization_assets.identity import resolve

        previous = load_state(kind) if engine == "ours-inc" else None
        t0, c0 = time.perf_counter(), time.process_time()
        res = resolve(df, previous=previous)
        seconds = time.perf_counter() - t0
        extra["cpu_seconds"] = round(time.process_time() - c0, 3)
        if engine == "ours-state":
            save_state(res, out)
        res.crosswalk[["record_id", "customer_key"]].rename(
            columns={"record_id": "rec_id", "customer_key": "cluster"}).to_parquet(out)
        extra = {**extra, "mode": res.stats["mode"], "mode_reason": res.stats["mode_reason"],
                 "prepared_records": res.stats["prepared_records"], "candidate_pairs": res.stats["candidate_pairs"],
                 "clustered_records": res.stats["clustered_records"], "em_iterations": res.model.iterations,
                 "stage_seconds": res.stats["stage_seconds"]}
    else:
        from bench.identity.splink_runner import run_splink

        t0 = time.perf_counter()
        clusters, pairs = run_splink(df, kind)
        seconds = time.perf_counter() - t0
        clusters.to_parquet(out)
        pairs.to_parquet(out.replace(".parquet", "-pairs.parquet"))
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), **extra}))


def _state_paths(out: str) -> dict[str, str]:
    paths = {t: out.replace(".parquet", f"-{t}.parquet") for t in ("crosswalk", "evidence", "golden")}
    return {**paths, "prepared": out.replace(".parquet", "-prepared.arrow")}


def save_state(res, out: str) -> None:
    paths = _state_paths(out)
    res.crosswalk.to_parquet(paths["crosswalk"])
    res.evidence.to_parquet(paths["evidence"])
    res.golden.to_parquet(paths["golden"])
    res.prepared.write(paths["prepared"])


def load_state(out: str):
    from personalization_assets.identity.state import Prepared, ResolvedState

    paths = _state_paths(out)
    # Arrow-backed columns, as a warehouse client can hand them over: a million short strings as
    # Python objects would cost more memory than the whole full run. The prepared records stay in
    # their file (memory-mapped): the run reads the columns and rows it needs.
    return ResolvedState.from_tables(*(pd.read_parquet(paths[t], dtype_backend="pyarrow")
                                       for t in ("crosswalk", "evidence", "golden")),
                                     prepared=Prepared(path=paths["prepared"]))


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
