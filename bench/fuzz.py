"""Fuzz the running collector and its webhooks: N generated requests per endpoint, real HTTP.

    python -m bench.fuzz [--requests 10000] [--endpoints /v1/batch /webhooks/mailgun ...]

The generators and invariants are those of the in-suite fuzz test
(personalization_assets_tests/collector/fuzzing.py): hostile batches (nesting past orjson's and
repr's limits, >64-bit integers, timestamps in year 1/9999, bad gzip, wrong keys), single events,
and signed or forged SendGrid, Mailgun and generic webhooks. Prints, per endpoint: requests sent,
answers by status, server errors (5xx) and broken invariants (counts that do not add up, an
acknowledged event stored twice or not at all). Target (issue 18): 0 server errors.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

from personalization_assets_tests.collector.fuzzing import ENDPOINTS, Target


def fuzz(target: Target, endpoint: str, n: int) -> dict:
    statuses: Counter = Counter()
    problems: list = []

    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(req=target.strategy(endpoint))
    def one(req):
        status, broken = target.check(req)
        statuses[status] += 1
        if broken:
            problems.append((status, broken, req.body[:200]))

    t0 = time.perf_counter()
    one()
    return {"statuses": statuses, "problems": problems, "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="generated requests per endpoint")
    parser.add_argument("--endpoints", nargs="+", default=list(ENDPOINTS), choices=ENDPOINTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        target = Target(Path(tmp))
        try:
            print(f"{'endpoint':22} {'requests':>8} {'5xx':>5} {'broken':>6} {'req/s':>6}  answers by status")
            total_errors = 0
            for endpoint in args.endpoints:
                res = fuzz(target, endpoint, args.requests)
                sent = sum(res["statuses"].values())
                errors = sum(v for k, v in res["statuses"].items() if k >= 500)
                total_errors += errors + len(res["problems"])
                codes = ", ".join(f"{k}: {v}" for k, v in sorted(res["statuses"].items()))
                print(f"{endpoint:22} {sent:>8,} {errors:>5} {len(res['problems']):>6} "
                      f"{sent / res['seconds']:>6.0f}  {codes}", flush=True)
                for status, broken, body in res["problems"][:3]:
                    print(f"    {status}: {broken}  body {body!r}")
        finally:
            target.close()
    print(f"\n{'PASS' if total_errors == 0 else 'FAIL'}: {total_errors} server errors or broken invariants")


if __name__ == "__main__":
    main()
