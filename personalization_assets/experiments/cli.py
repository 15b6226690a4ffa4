"""`personalization lift`: per-arm means and lift vs the control of any randomized campaign file."""

from __future__ import annotations

import argparse
import json
import sys


def add_lift_command(sub) -> None:
    """Register `lift` on the platform CLI's subparsers."""
    p = sub.add_parser("lift", help="per-arm n, means and lift vs the control (95%% Welch CI, p-value) of a "
                       "randomized campaign CSV")
    p.add_argument("--csv", required=True, help="the campaign file, one row per customer")
    p.add_argument("--arm-column", required=True, help="column naming each row's arm")
    p.add_argument("--control", required=True, help="the control arm's value in that column")
    p.add_argument("--outcome", action="append", required=True, help="a numeric outcome column (repeatable)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (default: %(default)s, a table)")
    p.set_defaults(func=run_lift)


def run_lift(args: argparse.Namespace) -> int:
    import pandas as pd

    from .results import ResultsError, arm_results

    try:
        # Arms as text (keep_default_na off for it): "NA" or "0" is an arm's name, not a missing value.
        df = pd.read_csv(args.csv, dtype={args.arm_column: str}, keep_default_na=False, na_values={
            name: ["", "NA", "NaN", "nan", "null"] for name in args.outcome})
    except FileNotFoundError:
        return _fail(f"no such file: {args.csv}")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        return _fail(f"cannot read {args.csv} as CSV: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    try:
        results = arm_results(df, args.arm_column, args.control, list(dict.fromkeys(args.outcome)), where=args.csv)
    except ResultsError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(results))
    else:
        print(_table(results))
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _table(results: dict) -> str:
    lines = [f"{'arm':24} {'n':>9} {'outcome':14} {'mean':>10} {'lift':>10} {'95% CI':>24} {'rel. lift':>10} {'p':>8}"]
    for arm in results["arms"]:
        for name, o in arm["outcomes"].items():
            ci = "-" if o["ci_low"] is None else f"[{_fmt(o['ci_low'])}, {_fmt(o['ci_high'])}]"
            rel = "-" if o["relative_lift"] is None else f"{o['relative_lift']:+.1%}"
            lines.append(f"{arm['arm'][:24]:24} {arm['n']:>9} {name[:14]:14} {_fmt(o['mean']):>10} "
                         f"{_fmt(o['lift']):>10} {ci:>24} {rel:>10} {_fmt(o['p_value'], 3):>8}")
    lines.append(f"method: {results['method']}")
    return "\n".join(lines)
