"""`personalization audience preview FILE.yaml`: size now, overlap, 5 members with evidence."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone


def add_audience_command(sub) -> None:
    """Register `audience` on the platform CLI's subparsers."""
    p = sub.add_parser("audience", help="work with audience definitions")
    inner = p.add_subparsers(dest="audience_command", required=True)
    pv = inner.add_parser("preview", help="size now, overlap with the packaged audiences, 5 members with evidence")
    pv.add_argument("file", help="an audience definition (YAML)")
    pv.set_defaults(func=run_preview)


def run_preview(args: argparse.Namespace) -> int:
    import yaml

    from .. import settings
    from ..warehouse import connect_duckdb
    from .model import DefinitionError, load_builtin, parse
    from .preview import PreviewError, on_warehouse

    try:
        with open(args.file, encoding="utf-8") as fh:
            audience = parse(yaml.safe_load(fh), origin=args.file)
    except (OSError, yaml.YAMLError, DefinitionError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    path = settings.warehouse_path()
    if not path.exists():
        print(f"error: no warehouse at {path}: run `personalization demo` or set PERSONALIZATION_DATA_DIR",
              file=sys.stderr)
        return 1
    others = [a for a in load_builtin() if a.name != audience.name]
    with connect_duckdb(path) as conn:
        try:
            result = on_warehouse(conn, audience, others, datetime.now(timezone.utc))
        except PreviewError as exc:
            print(f"error: {args.file}: {exc}", file=sys.stderr)
            return 1
    print(f"{result.name}: {result.size} members now")
    for name, n in sorted(result.overlap.items(), key=lambda kv: -kv[1]):
        print(f"  overlap with {name}: {n}")
    for member, met in result.samples.items():
        print(f"  {member}: " + ("; ".join(met) or "(no single condition: a combination of any:)"))
    return 0
