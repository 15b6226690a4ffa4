"""`personalization triggers`: run the trigger engine (also `python -m personalization_assets.realtime`)."""

from __future__ import annotations

import argparse
import json
import logging


def add_triggers_command(sub) -> None:
    """Register the `triggers` subcommand on the platform CLI's subparsers."""
    p = sub.add_parser("triggers", help="run the real-time trigger engine on the event bus")
    configure_parser(p)
    p.set_defaults(func=run_from_args)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bus", default=None, help="bus URL (default: EVENT_BUS_URL or <data dir>/events.db)")
    p.add_argument("--state", default=None, help="ledger + checkpoint SQLite file"
                   " (default: <data dir>/triggers.sqlite)")
    p.add_argument("--definitions", default=None, help="triggers YAML (default: the packaged one)")
    p.add_argument("--set", action="append", default=[], metavar="TRIGGER.FIELD=VALUE",
                   help="override a field, e.g. cart_abandonment.delay=2m (repeatable; default: none)")
    p.add_argument("--no-quiet-hours", action="store_true", help="disable quiet hours (default: %(default)s)")
    p.add_argument("--guard", default=None, help="consent/unsubscribe SQLite file"
                   " (default: <data dir>/trigger_guard.sqlite)")
    p.add_argument("--traits", default=None, help="computed-trait store (customer_traits) that triggers"
                   " with `when:` read (default: the --guard file, where marts/computed_traits syncs them)")
    p.add_argument("--allow-unknown", action="store_true",
                   help="let customers missing from the guard store through (demo only; default: %(default)s)")
    p.add_argument("--port", type=int, default=9108, help="/metrics port on 127.0.0.1, 0 = any (default: %(default)s)")
    p.add_argument("--inspect", action="store_true", help="print the checkpointed state and exit (default: %(default)s)")


def trigger_set_from_args(args):
    from dataclasses import replace

    from .definitions import load_trigger_set

    ts = load_trigger_set(args.definitions)
    overrides: dict[str, dict] = {}
    for item in args.set:
        target, _, value = item.partition("=")
        name, _, fld = target.partition(".")
        if not (name and fld and value):
            raise SystemExit(f"error: --set needs TRIGGER.FIELD=VALUE, got {item!r}")
        ts.get(name)
        overrides.setdefault(name, {})[fld] = value.split(",") if fld in (
            "start_on", "cancel_on", "group_by", "cancel_match") else value
    ts = ts.with_overrides(**overrides)
    if args.no_quiet_hours:
        ts = replace(ts, limits=replace(ts.limits, quiet_hours=None))
    return ts


def run_from_args(args) -> int:
    from .. import settings
    from ..redact import redact_url
    from ..shutdown import stop_on_signals
    from .runner import inspect_state, run_engine

    bus = args.bus or settings.event_bus_url()
    state = args.state or str(settings.data_dir() / "triggers.sqlite")
    if args.inspect:
        print(json.dumps(inspect_state(state), indent=2, default=str))
        return 0
    guard = args.guard or str(settings.data_dir() / "trigger_guard.sqlite")
    stop = stop_on_signals()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_engine(bus, state, trigger_set_from_args(args), args.port, guard=guard,
               allow_unknown=args.allow_unknown, stop=stop, traits=args.traits or guard,
               ready=lambda port: print(f"triggers: consuming {redact_url(bus)}; metrics on 127.0.0.1:{port}",
                                        flush=True))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m personalization_assets.realtime",
                                     description=__doc__)
    configure_parser(parser)
    return run_from_args(parser.parse_args(argv))
