"""Where our engine merges two people: the false-positive pairs of a run on the household
generator, counted by what the two records share and what tells them apart.

    python -m bench.identity.false_merges [--records 300000] [--examples 5]

Prints peak RSS and seconds of the run, P/R/F1, then the false pairs by category: the truth
relation of the two people (same household and their roles, or strangers), and per field
whether the records agree, differ or miss a value. A pair is either a link the engine made
(``direct``) or two records only joined through others (``chained``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.identity.households import generate_households
from bench.identity.metrics import pairwise
from bench.identity.worker import peak_rss_mb

FIELDS = ("first_name", "last_name", "birth_date", "email_key", "phone", "street", "postcode")


def false_pairs(df: pd.DataFrame, cluster: pd.Series) -> pd.DataFrame:
    """All record pairs (positions into df) inside one predicted cluster whose people differ."""
    lab = pd.factorize(cluster.reindex(df["record_id"]).to_numpy())[0]
    order = np.argsort(lab, kind="stable")
    sizes = np.bincount(lab)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    left, right = [], []
    for c in np.flatnonzero(sizes > 1):
        m = order[starts[c]:starts[c] + sizes[c]]
        i, j = np.triu_indices(m.size, 1)
        left.append(m[i])
        right.append(m[j])
    a = np.concatenate(left) if left else np.empty(0, int)
    b = np.concatenate(right) if right else np.empty(0, int)
    ent = df["entity"].to_numpy()
    fp = ent[a] != ent[b]
    return pd.DataFrame({"a": a[fp], "b": b[fp]})


def describe(df: pd.DataFrame, pairs: pd.DataFrame, linked: set[tuple[str, str]]) -> pd.DataFrame:
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    out = pd.DataFrame(index=pairs.index)
    hh = df["household"].to_numpy()
    role = df["role"].to_numpy(object)
    same_hh = hh[a] == hh[b]
    roles = np.array(["+".join(sorted((x, y))) for x, y in zip(role[a], role[b])], dtype=object)
    out["relation"] = np.where(same_hh, roles, "strangers")
    for f in FIELDS:
        v = df[f].astype("string").str.lower().str.strip()
        x, y = v.to_numpy(object)[a], v.to_numpy(object)[b]
        miss = pd.isna(x) | pd.isna(y)
        eq = np.array([(not m) and p == q for p, q, m in zip(x, y, miss)])
        out[f] = np.where(miss, "null", np.where(eq, "same", "diff"))
    rid = df["record_id"].to_numpy(object)
    out["link"] = ["direct" if (p, q) in linked or (q, p) in linked else "chained" for p, q in zip(rid[a], rid[b])]
    return out


class _RssSampler:
    """Samples this process's RSS every 50 ms, to tell which stage of a run holds the peak."""

    def __init__(self):
        import threading

        self.samples: list[tuple[float, float]] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            with open("/proc/self/status") as fh:
                rss = next(int(x.split()[1]) for x in fh if x.startswith("VmRSS:")) / 1024
            self.samples.append((time.perf_counter(), rss))
            time.sleep(0.05)

    def per_stage(self, t0: float, laps: dict[str, float]) -> dict[str, int]:
        out, start = {}, t0
        for name, sec in laps.items():
            end = start + sec
            out[name] = int(max((r for t, r in self.samples if start <= t <= end), default=0))
            start = end
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--examples", type=int, default=3)
    ap.add_argument("--cache", help="folder keeping generated records between runs")
    ap.add_argument("--dump", help="folder to write the records and the run's crosswalk, evidence and review to")
    args = ap.parse_args()
    from personalization_assets.identity import resolve

    cached = Path(args.cache) / f"hh{args.records}-{args.seed}.parquet" if args.cache else None
    if cached is not None and cached.exists():
        df = pd.read_parquet(cached)
    else:
        df = generate_households(args.records, seed=args.seed)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            df.to_parquet(cached)
    sampler = _RssSampler()
    t0, c0 = time.perf_counter(), time.process_time()
    res = resolve(df.drop(columns=["entity", "household", "role"]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print("peak RSS MB per stage:", sampler.per_stage(t0, res.stats["stage_seconds"]))
    print(f"{args.records} records: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak_rss_mb():.0f} MB; "
          f"stages {res.stats['stage_seconds']}")
    if args.dump:
        Path(args.dump).mkdir(parents=True, exist_ok=True)
        for name, frame in (("records", df), ("crosswalk", res.crosswalk), ("evidence", res.evidence),
                            ("review", res.review)):
            frame.to_parquet(Path(args.dump) / f"{name}.parquet")
    cluster = res.crosswalk.set_index("record_id")["customer_key"]
    print(pairwise(df.set_index("record_id")["entity"], cluster))
    ev = res.evidence
    linked = set(zip(ev["left_record_id"], ev["right_record_id"]))
    fp = false_pairs(df, cluster)
    d = describe(df, fp, linked)
    print(f"false pairs: {len(d)}")
    pd.set_option("display.width", 250)
    pd.set_option("display.max_rows", 200)
    for col in ["relation", "link"]:
        print(d[col].value_counts().to_string(), "\n")
    pattern = d.groupby(["relation", "link", *FIELDS]).size().sort_values(ascending=False)
    print(pattern.head(40).to_string())
    cols = ["record_id", *FIELDS, "city", "entity", "household", "role"]
    for key, grp in d.groupby(["relation", "link", *FIELDS]).groups.items() if args.examples else ():
        if len(grp) < max(20, len(d) // 50):
            continue
        print("\n==", key, len(grp))
        for i in list(grp)[:args.examples]:
            print(df.iloc[[fp.at[i, "a"], fp.at[i, "b"]]][cols].to_string(header=False))


if __name__ == "__main__":
    main()
