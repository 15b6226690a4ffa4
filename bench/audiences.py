"""Audiences: SQL evaluation of many audiences, and the stream compilation's throughput.

    python -m bench.audiences [--customers 1000000] [--events 10000000] [--audiences 50]
                              [--stream-events 200000] [--json]

Synthetic shop events over 30 days (views, adds, checkouts, orders; 20 categories; amounts on
orders) go into an in-memory DuckDB table `aud_events`; 50 audiences drawn from the language's
shapes (category counts, sums, abandonment with not_followed_by, computed most-frequent category)
are compiled and evaluated at one instant. Then `--stream-events` of the same events are replayed,
in receive order, through the stream compilation of all the audiences, and through the
cart_abandonment audience alone. Targets (issue 22): 50 audiences at 1M customers / 10M events in
SQL < 60 s; stream >= 20,000 events/s on one core.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone

import duckdb
import numpy as np

from personalization_assets.audiences.equivalence import replay
from personalization_assets.audiences.model import load_builtin, parse
from personalization_assets.audiences.sql import membership_sql
from personalization_assets.audiences.stream import StreamEvent

NAMES = np.array(["product viewed", "product added", "checkout started", "order completed"])
END = datetime(2026, 6, 1, tzinfo=timezone.utc).timestamp()


def generate(con, customers: int, events: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    con.execute("create table aud_customers as select 'c' || range as customer_key from range(?)", [customers])
    ts = np.sort(END - rng.random(events) * 30 * 86400)
    kinds = rng.choice(4, size=events, p=[0.7, 0.2, 0.05, 0.05])
    value = np.where(kinds == 3, rng.integers(1000, 30000, events), -1)
    frame = {"customer_key": np.char.add("c", rng.integers(0, customers, events).astype(str)),
             "event": NAMES[kinds], "ts": ts, "received": ts + rng.integers(0, 60, events),
             "category": np.char.add("cat", rng.integers(0, 20, events).astype(str)),
             "value_minor": value}
    import pandas as pd

    df = pd.DataFrame(frame)
    df["value_minor"] = df["value_minor"].where(df["value_minor"] >= 0).astype("Int64")
    for col in ("sku", "currency", "cart_id", "checkout_id", "order_id"):
        df[col] = None
    con.register("df", df)
    con.execute("create table aud_events as select * from df")
    con.unregister("df")


def audiences(n: int):
    out = []
    for i in range(n):
        cat = f"cat{i % 20}"
        shape = i % 4
        if shape == 0:
            rule = {"event": "product viewed", "where": {"category": [cat]}, "count": f">= {1 + i % 3}", "within": "7d"}
        elif shape == 1:
            rule = {"event": "order completed", "sum": "value_minor", "is": f">= {10000 + 100 * i}", "within": "30d"}
        elif shape == 2:
            rule = {"event": ["product added", "checkout started"], "exists": True, "between": ["1h", f"{1 + i % 5}d"],
                    "not_followed_by": {"event": "order completed"}}
        else:
            rule = {"computed": "top", "op": "=", "value": cat}
        out.append(parse({"name": f"a{i}", "description": "bench", "rule": rule,
                          "traits": {"top": {"most_frequent": "category", "of": "product viewed", "within": "14d"}}}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--audiences", type=int, default=50)
    ap.add_argument("--stream-events", type=int, default=200_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    con = duckdb.connect()
    t0 = time.perf_counter()
    generate(con, args.customers, args.events)
    gen_s = time.perf_counter() - t0
    defs = audiences(args.audiences)
    at = datetime.fromtimestamp(END, timezone.utc)
    t0 = time.perf_counter()
    sizes = []
    for a in defs:
        sql, params = membership_sql(a, at)
        sizes.append(con.execute(f"select count(*) from ({sql})", params).fetchone()[0])
    sql_s = time.perf_counter() - t0
    rows = con.execute("select customer_key, event, ts, received, category, value_minor from aud_events "
                       "order by received limit ?", [args.stream_events]).fetchall()
    events = [StreamEvent(ts, k, e, r, {c: v for c, v in (("category", cat), ("value_minor", val)) if v is not None})
              for k, e, ts, r, cat, val in rows]
    end = max(e.ts for e in events)
    t0 = time.perf_counter()
    replay(defs, events, end)
    all_s = time.perf_counter() - t0
    cart = [a for a in load_builtin() if a.name == "cart_abandonment"]
    t0 = time.perf_counter()
    replay(cart, events, end)
    one_s = time.perf_counter() - t0
    figures = {"customers": args.customers, "events": args.events, "audiences": len(defs),
               "generate_s": round(gen_s, 1), "sql_all_audiences_s": round(sql_s, 2),
               "sql_mean_audience_size": int(np.mean(sizes)),
               "stream_events": len(events), "stream_all_audiences_events_per_s": int(len(events) / all_s),
               "stream_cart_abandonment_events_per_s": int(len(events) / one_s)}
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
