"""Identity benchmark: our engine vs Splink on FEBRL 1-4, the FEBRL-like generator (gen*) and the
hostile household generator (hh*: families, shared mailboxes and phones, twins, Jr/Sr), and mb20k
(20k generated records plus 200 different people who all give one mailbox).

    python -m bench.identity [--datasets febrl1,...,gen1m] [--engines ours,splink] [--data-dir DIR]

``--datasets gen1m --engines ours`` is the quick scale-only loop while iterating; the
figures worth quoting come from one run of both engines side by side.

Each engine runs in its own subprocess per dataset (time = matching only, after loading;
peak RSS = whole process). Accuracy is pairwise precision/recall/F1 of the final clusters
against the true entities, both engines at match probability 0.5; Splink's best-threshold F1
(threshold chosen with the labels) is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench import data
from bench.identity import datasets
from bench.identity.metrics import best_threshold, blocking_recall, pairwise

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("targets: precision >= 0.98 everywhere at our default; F1 >= Splink's best-threshold F1 everywhere; "
           "1M: time < 0.5x Splink, peak RSS < 2 GB")


def _run(engine: str, path: Path, kind: str, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.identity.worker", engine, str(path), kind, str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="febrl1,febrl2,febrl3,febrl4,gen100k,hh20k,hh100k",
                    help="also mb20k (20k generated + 200 people sharing one mailbox), gen1m, hh1m "
                         "(the 1M sets take minutes and GBs with Splink)")
    ap.add_argument("--engines", default="ours,splink", help="comma list; drop splink while iterating")
    ap.add_argument("--data-dir", help=f"folder holding febrl/ (default: ${data.ENV} or {data.DEFAULT})")
    args = ap.parse_args()
    if args.data_dir:
        os.environ[data.ENV] = args.data_dir
    if any(name in datasets.FEBRL for name in args.datasets.split(",")):
        data.dataset("febrl")  # fail before any work when it is missing
    engines = args.engines.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as tmp:
        for name in args.datasets.split(","):
            ours_df, native, kind = datasets.load(name)
            truth = ours_df.set_index("record_id")["entity"]
            p_ours, p_spl = Path(tmp) / f"{name}-ours.parquet", Path(tmp) / f"{name}-splink.parquet"
            ours_df.drop(columns="entity").to_parquet(p_ours)
            native.drop(columns="entity").to_parquet(p_spl)
            brecall, n_pairs = blocking_recall(ours_df)
            res = {}
            for engine, path in (("ours", p_ours), ("splink", p_spl)):
                if engine not in engines:
                    res[engine] = {}
                    continue
                out = Path(tmp) / f"{name}-{engine}-out.parquet"
                r = _run(engine, path, kind, out)
                if "error" not in r:
                    cl = pd.read_parquet(out).set_index("rec_id")["cluster"]
                    r.update(pairwise(truth, cl))
                    pairs_file = Path(str(out).replace(".parquet", "-pairs.parquet"))
                    if pairs_file.exists():
                        r.update(best_threshold(truth, pd.read_parquet(pairs_file)))
                res[engine] = r
                print(f"{name} {engine}: {json.dumps(r)}", flush=True)
            o, s = res["ours"], res["splink"]
            fmt = lambda d, k: f"{d[k]:.4f}" if k in d else ("err" if d else "-")  # noqa: E731
            rows.append([name, len(ours_df), fmt(o, "precision"), fmt(o, "recall"), fmt(o, "f1"),
                         fmt(s, "precision"), fmt(s, "recall"), fmt(s, "f1"), fmt(s, "best_f1"),
                         str(s.get("best_threshold", "-")), f"{brecall:.4f}", n_pairs,
                         f"{o.get('seconds', float('nan')):.1f}", f"{s.get('seconds', float('nan')):.1f}",
                         f"{o.get('seconds', 0) / s['seconds']:.2f}" if "seconds" in s else "-",
                         f"{o.get('peak_rss_mb', 0):.0f}", f"{s.get('peak_rss_mb', 0):.0f}",
                         f"{o.get('peak_rss_mb', 0) / s['peak_rss_mb']:.2f}" if "peak_rss_mb" in s else "-"])
    print()
    print(tabulate(rows, headers=["dataset", "records", "our P", "our R", "our F1", "splink P", "splink R",
                                  "splink F1", "splink best F1", "at p", "blocking recall", "cand. pairs", "our s",
                                  "splink s",
                                  "time ratio", "our MB", "splink MB", "RSS ratio"]))
    print(TARGETS)


if __name__ == "__main__":
    main()
