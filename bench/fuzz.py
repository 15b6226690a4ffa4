"""Fuzz the running collector, its webhooks and the one-click unsubscribe endpoint: N generated
requests per endpoint, real HTTP on 127.0.0.1.

    python -m bench.fuzz [--requests 10000] [--endpoints /v1/batch /unsubscribe ...]

The generators and invariants are those of the in-suite fuzz test
(personalization_assets_tests/collector/fuzzing.py): hostile batches (nesting past orjson's and
repr's limits, >64-bit integers, timestamps in year 1/9999, bad gzip, wrong keys) on /v1/batch and
/v1/import, single events on each of the six single-event routes, signed, forged and replayed
SendGrid, Mailgun and generic webhooks, and one-click POSTs and GETs with valid, tampered and
foreign tokens, form bodies of every kind and oversized bodies.

Prints, per endpoint: requests sent and answers by class (2xx, 4xx, 5xx); over the 200 answers,
the events they carried and how they were counted (accepted + quarantined + duplicates, which must
equal the events sent) against the records the stores gained (bus and quarantine); broken
invariants (see fuzzing.py); and the rate. Target (issue 18): 0 server errors, 0 broken.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

from personalization_assets_tests.collector.fuzzing import ENDPOINTS, Target

COUNTS = ("sent", "accepted", "quarantined", "duplicates", "stored", "stored_quarantine")


def fuzz(target: Target, endpoint: str, n: int) -> dict:
    statuses: Counter = Counter()
    totals: Counter = Counter()
    problems: list = []

    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(req=target.strategy(endpoint))
    def one(req):
        out = target.check(req)
        statuses[out.status] += 1
        for name in COUNTS:
            totals[name] += getattr(out, name)
        if out.problems:
            problems.append((out.status, out.problems, req.body[:200]))

    t0 = time.perf_counter()
    one()
    return {"statuses": statuses, "totals": totals, "problems": problems, "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="generated requests per endpoint")
    parser.add_argument("--endpoints", nargs="+", default=list(ENDPOINTS), choices=ENDPOINTS)
    args = parser.parse_args()
    total_errors = 0
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        target = Target(Path(tmp))
        try:
            print(f"{'endpoint':20} {'requests':>8} {'2xx':>6} {'4xx':>6} {'5xx':>4} | {'events':>6} "
                  f"{'accept':>6} {'quar':>5} {'dups':>5} {'a+q+d':>6} | {'stored':>6} {'q-stored':>8} | "
                  f"{'broken':>6} {'req/s':>5}  answers by status", flush=True)
            for endpoint in args.endpoints:
                res = fuzz(target, endpoint, args.requests)
                st, t = res["statuses"], res["totals"]
                sent = sum(st.values())
                by_class = {c: sum(v for k, v in st.items() if k // 100 == c) for c in (2, 4, 5)}
                total_errors += by_class[5] + len(res["problems"])
                counted = t["accepted"] + t["quarantined"] + t["duplicates"]
                codes = ", ".join(f"{k}: {v}" for k, v in sorted(st.items()))
                print(f"{endpoint:20} {sent:>8,} {by_class[2]:>6,} {by_class[4]:>6,} {by_class[5]:>4} | "
                      f"{t['sent']:>6,} {t['accepted']:>6,} {t['quarantined']:>5,} {t['duplicates']:>5,} "
                      f"{'=' if counted == t['sent'] else '!='}{counted:>5,} | {t['stored']:>6,} "
                      f"{t['stored_quarantine']:>8,} | {len(res['problems']):>6} "
                      f"{sent / res['seconds']:>5.0f}  {codes}",
                      flush=True)
                for status, broken, body in res["problems"][:3]:
                    print(f"    {status}: {broken}  body {body!r}", flush=True)
        finally:
            target.close()
    print(f"\n{'PASS' if total_errors == 0 else 'FAIL'}: {total_errors} server errors or broken invariants")


if __name__ == "__main__":
    main()
