"""`personalization`: the command line. `personalization demo` runs the whole platform locally.

Each subcommand is a small function registered in COMMANDS; expected failures print one clear
line and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

# The command modules below import only the standard library at import time: building the parser
# stays fast, and each command imports its heavy parts when it runs.
from .audiences.cli import add_audience_command
from .delivery.cli import add_deliver_command
from .errors import UserError  # the commands raise it; identity/cli.py and live.py too
from .experiments.cli import add_lift_command
from .live import add_up_command


def _demo(args: argparse.Namespace) -> int:
    from .clock import iso, parse_instant

    now = None
    if args.now:
        try:
            now = parse_instant(args.now)
        except ValueError as exc:
            raise UserError(f"--now: {exc}") from None
        if now > datetime.now(timezone.utc):
            raise UserError(f"--now {iso(now)} is in the future: the demo's sources would report times "
                            "that have not happened yet; give a past instant or leave --now out")
    data_dir = Path(args.data_dir).resolve()
    os.environ["PERSONALIZATION_DATA_DIR"] = str(data_dir)
    os.environ["DAGSTER_DEPLOYMENT"] = "local"
    home = instance_home(os.environ.setdefault("DAGSTER_HOME", str(Path(args.dagster_home).resolve())))

    started = time.perf_counter()
    print(f"Seeding demo sources in {data_dir} (seed {args.seed}, scale {args.scale:g}) ...", flush=True)
    from .demo.console import hide_library_warnings

    hide_library_warnings()  # e.g. Dagster's BetaWarning: a demo user can do nothing about them
    from .demo.run import run_demo, summary_table

    try:
        outcome = run_demo(seed=args.seed, scale=args.scale, now=now, fresh=args.fresh, inject_bad=args.inject_bad,
                           say=lambda line: print(line, flush=True))
    except ValueError as exc:  # e.g. a data dir that is not the demo's
        raise UserError(str(exc)) from None
    ui = "personalization ui" + "".join(f" {flag} {value}" for flag, value, default in (
        ("--data-dir", args.data_dir, ".data"), ("--dagster-home", args.dagster_home, ".dagster_home"))
        if value != default) + f"   (Runs -> {outcome.run_id[:8]})"
    caught = bool(outcome.injected and outcome.failed_checks)  # --inject-bad: the checks did their job
    if not outcome.success and not caught:
        print(f"\nThe run failed after {time.perf_counter() - started:.1f} s:\n  " + "\n  ".join(outcome.errors)
              + f"\nFull logs: {ui}", file=sys.stderr)
        raise UserError("the demo run failed: fix the cause above and run the demo again, or start over with "
                        f"`personalization demo --fresh --data-dir {args.data_dir} --dagster-home {args.dagster_home}`")
    print("\n" + summary_table(outcome))
    print(f"\nDone in {time.perf_counter() - started:.1f} s, as of {iso(outcome.now)} (seed {args.seed}, "
          f"scale {args.scale:g}; --now {iso(outcome.now)} rebuilds exactly these tables). "
          f"Warehouse: {outcome.warehouse}")
    if caught:
        print("\nThe checks caught the injected rows (this run failed on purpose). What next:\n"
              "  personalization demo            starts over and builds the clean demo again (as --fresh does)\n"
              "  replay the quarantine after a fix (records that pass now move into staging, once):\n"
              f"    DAGSTER_HOME={home} PERSONALIZATION_DATA_DIR={data_dir} \\\n"
              f"    dagster asset materialize -m personalization_assets.definitions --select '{REPLAY_SELECTION}'")
    print(f"Open the Dagster UI on this run:\n  {ui}\n  then browse http://127.0.0.1:3000 (Assets -> Lineage)")
    print(f"Run the live system on this data (collector, trigger engine, sender, Dagster UI and daemon):\n"
          f"  personalization up --data-dir {args.data_dir} --dagster-home {args.dagster_home}\n"
          "  then see the e-mails the triggers send on the outbox page http://127.0.0.1:8090/")
    return 0


REPLAY_SELECTION = "raw/crm_customers,raw/shop_orders,raw/events,quarantine/staging_replayed"


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="seed sample data and materialize the whole graph into DuckDB")
    p.add_argument("--scale", type=float, default=1.0,
                   help="data size; 1 is about 2,000 customers (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the generated data (default: %(default)s)")
    p.add_argument("--now", default=None, metavar="ISO8601",
                   help="the demo's 'now', e.g. 2026-12-05T09:00:00Z: the same seed, scale and now give the "
                        "same tables (default: the current time for a new data set, the data set's own now on a rerun)")
    p.add_argument("--data-dir", default=".data", help="warehouse, event bus and demo sources (default: %(default)s)")
    p.add_argument("--dagster-home", default=".dagster_home",
                   help="Dagster instance (runs, sensor cursors) the UI reads; DAGSTER_HOME wins if set "
                        "(default: %(default)s)")
    p.add_argument("--fresh", action="store_true",
                   help="start over: delete the data dir and reset the instance's sensor and schedule cursors "
                        "(default: %(default)s)")
    p.add_argument("--inject-bad", action="store_true",
                   help="break the sources on purpose and watch the checks catch it (default: %(default)s)")
    p.set_defaults(func=_demo)


def _collector(args: argparse.Namespace) -> int:
    from .collector.server import run_collector
    from .collector.settings import load_write_keys
    from .redact import redact_url
    from .settings import event_bus_url

    if args.write_key:
        print("warning: --write-key shows the key to every user of this machine (ps); use the "
              "COLLECTOR_WRITE_KEYS environment variable or --write-key-file instead", file=sys.stderr)
    try:
        keys = load_write_keys(args.write_key, args.write_key_file)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    bus = args.bus or event_bus_url()
    print(f"collector on http://{args.host}:{args.port} -> {redact_url(bus)}"
          f" ({'any write key: demo mode' if not keys else f'{len(keys)} write key(s)'});"
          f" /health and /metrics on http://{args.admin_host}:{args.admin_port}", flush=True)
    try:
        run_collector(args.host, args.port, bus, keys, workers=args.workers, admin_host=args.admin_host,
                      admin_port=args.admin_port, header_timeout_s=args.header_timeout,
                      body_timeout_s=args.body_timeout, keep_alive_timeout_s=args.keep_alive_timeout,
                      max_connections=args.max_connections)
    except (RuntimeError, OSError, ValueError) as exc:  # a port in use, workers that cannot start, a bad bus URL
        message = str(exc).replace(bus, redact_url(bus))
        print(f"collector stopped: {message}", file=sys.stderr)
        return 1
    return 0


def _add_collector(sub) -> None:
    p = sub.add_parser("collector", help="run the Segment-compatible HTTP event collector",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="public address of the ingestion API")
    p.add_argument("--port", type=int, default=8088, help="public port of the ingestion API and webhooks")
    p.add_argument("--bus", default=None, help="bus URL (None: EVENT_BUS_URL or <data dir>/events.db)")
    p.add_argument("--write-key-file", default=None,
                   help="file of accepted write keys, one per line (# comments); with COLLECTOR_WRITE_KEYS"
                        " (comma-separated) the preferred way; no key at all accepts any (local demo only)")
    p.add_argument("--write-key", action="append", default=None,
                   help="accepted write key, repeatable; visible in ps, so prefer the file or the variable")
    p.add_argument("--workers", type=int, default=1, help="worker processes, one SO_REUSEPORT socket each")
    p.add_argument("--admin-host", default="127.0.0.1", help="address of /health and /metrics (keep it private)")
    p.add_argument("--admin-port", type=int, default=8089, help="port of /health and /metrics")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a client has to send a request's headers before the connection is closed")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds a client has to send a request's body before it gets 408")
    p.add_argument("--keep-alive-timeout", type=int, default=5, help="seconds an idle kept-alive connection stays open")
    p.add_argument("--max-connections", type=int, default=1000,
                   help="open connections per worker; new ones beyond it are closed at once")
    p.set_defaults(func=_collector)


def _add_triggers(sub) -> None:
    from .realtime.cli import add_triggers_command

    add_triggers_command(sub)


def _exporter(args: argparse.Namespace) -> int:
    from .monitoring.exporter import run_exporter

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    if not (home / "dagster.yaml").exists():
        raise UserError(f"no Dagster instance at {home}: run `personalization demo` or set DAGSTER_HOME")
    print(f"pipeline metrics exporter on http://{args.host}:{args.port}/metrics")
    run_exporter(port=args.port, host=args.host)
    return 0


def _add_exporter(sub) -> None:
    p = sub.add_parser("exporter", help="serve pipeline metrics (from the Dagster instance) to Prometheus",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=9110, help="port of /metrics")
    p.set_defaults(func=_exporter)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("personalization-assets")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def instance_home(path: str) -> Path:
    """The Dagster instance directory, created with the repository's dagster.yaml on first use."""
    home = Path(path).resolve()
    home.mkdir(parents=True, exist_ok=True)
    repo_yaml = Path(__file__).resolve().parent.parent / "dagster.yaml"
    if repo_yaml.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(repo_yaml, home / "dagster.yaml")
    return home


def _ui(args: argparse.Namespace) -> int:
    """`dagster dev` on the demo's instance and data directory.

    Dagster 1.13 marks `dagster dev` as superseded by `dg dev`, which expects the `dg` project
    layout; this project keeps the classic layout (`[tool.dagster]` in pyproject.toml), where
    `dagster dev` runs the same webserver and daemon. The FutureWarning saying so is hidden here.
    """
    command, env = ui_command(args)
    print(f"Dagster UI on http://{args.host}:{args.port} (instance {env['DAGSTER_HOME']}, "
          f"data {env['PERSONALIZATION_DATA_DIR']}); Ctrl-C stops it", flush=True)
    os.execvpe(command[0], command, env)
    return 0  # not reached


def ui_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The `dagster dev` command line and environment of `personalization ui` (the instance is
    created on first use); its SupersessionWarning ("use 'dg dev'") is a FutureWarning."""
    home = instance_home(os.environ.get("DAGSTER_HOME") or args.dagster_home)
    env = dict(os.environ, DAGSTER_HOME=str(home),
               PERSONALIZATION_DATA_DIR=os.environ.get("PERSONALIZATION_DATA_DIR") or str(Path(args.data_dir).resolve()),
               PYTHONWARNINGS="ignore::FutureWarning")
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster) if dagster.exists() else "dagster", "dev", "-m", "personalization_assets.definitions",
               "--host", args.host, "--port", str(args.port)]
    return command, env


def _add_ui(sub) -> None:
    p = sub.add_parser("ui", help="open the Dagster UI (dagster dev) on the demo's runs and warehouse",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address of the webserver")
    p.add_argument("--port", type=int, default=3000, help="port of the webserver")
    p.add_argument("--data-dir", default=".data", help="warehouse, bus and demo sources "
                   "(PERSONALIZATION_DATA_DIR wins when set)")
    p.add_argument("--dagster-home", default=".dagster_home", help="Dagster instance: runs, schedules, "
                   "sensor cursors (DAGSTER_HOME wins when set)")
    p.set_defaults(func=_ui)


def _forget(args: argparse.Namespace) -> int:
    import duckdb

    from . import settings
    from .activation.erasure import earlier_erasure, forget, process_erasure_queue
    from .activation.erasure_stores import LandingStore, LocalExports, leftover_bytes, local_stores, rewrite_duckdb_file
    from .assets import all_definitions
    from .assets.activation import pii_tables
    from .email_events.bus import email_events_bus_url
    from .email_events.files import landing_dir
    from .resources.warehouse import DuckDBWarehouse

    if settings.deployment() != "local":
        raise UserError("`forget` runs on the embedded DuckDB warehouse; on Snowflake call activation.erasure.forget")
    path = settings.warehouse_path()
    if not path.exists():
        raise UserError(f"no warehouse at {path}: run `personalization demo` or set PERSONALIZATION_DATA_DIR")
    stores = local_stores(settings.data_dir(), settings.event_bus_url(), email_events_bus_url(), landing_dir())
    receipt = None
    try:
        with DuckDBWarehouse(database=str(path)).connect() as conn:
            try:
                receipt = forget(conn, args.identifier, pii_tables(all_definitions()), stores=stores)
            except LookupError as exc:
                done = earlier_erasure(conn, args.identifier)
                if done is None:
                    raise UserError(str(exc)) from None
                print(f"{args.identifier} was erased already (erasure {done}); finishing the warehouse file rewrite")
            if receipt is not None:
                process_erasure_queue(conn, [s for s in stores if isinstance(s, LocalExports)])  # exports erased above
                for store in stores:
                    if isinstance(store, LandingStore):
                        store.record_loaded(conn)
    except duckdb.IOException as exc:
        raise UserError(f"cannot open {path}: {exc}; stop the runs (or `dagster dev`) that hold it and run forget again") from None
    try:
        rewrite_duckdb_file(path)  # DuckDB keeps deleted values in its file until it is copied
    except (OSError, duckdb.IOException) as exc:
        raise UserError(f"erased, but {path} still holds the deleted values until it is rewritten: {exc}; "
                        "run `personalization forget` for the same person again once no run holds the file") from None
    return 0 if receipt is None else _forget_report(receipt, path, leftover_bytes(path, receipt.identifiers))


def _forget_report(receipt, path: Path, left: int) -> int:
    print(f"erasure {receipt.erasure_id}: {len(receipt.identifiers.values())} identifiers, "
          f"{sum(receipt.deleted.values())} rows deleted")
    for place, n in sorted(receipt.deleted.items()):
        if n:
            print(f"  {place:40} {n:>8}")
    shared = len(receipt.identifiers.shared_emails) + len(receipt.identifiers.shared_phones)
    if shared:
        print(f"kept {shared} value(s) another customer also holds (shared phone or address): not theirs to erase")
    remote = [d for d in receipt.destinations if d != "file"]
    print(f"destination deletions queued (encrypted until they confirm): {', '.join(remote) or 'none'}")
    from .activation.erasure_stores import dagster_runs_mentioning

    runs = dagster_runs_mentioning(os.environ.get("DAGSTER_HOME"), receipt.identifiers)
    if runs:
        print(f"warning: {len(runs)} Dagster run record(s) from before previews were masked still mention the person "
              f"({', '.join(runs[:5])}{', ...' if len(runs) > 5 else ''}): delete them with `dagster run delete <id>`")
    if not receipt.verified or left:
        raise UserError(f"the person's identifiers are still held: {({k: v for k, v in receipt.remaining.items() if v})}"
                        f"{f'; {left} raw copies in {path}' if left else ''}")
    print("verified: no table, bus, guard store, ledger, landing or export file holds the person's identifiers; "
          "receipt in compliance.erasure_ledger")
    return 0


def _add_forget(sub) -> None:
    p = sub.add_parser("forget", help="erase a person (e-mail or customer id) from the warehouse and destinations")
    p.add_argument("identifier", help="e-mail address, customer_key, CRM record id or tracked user id")
    p.set_defaults(func=_forget)


def _add_identity(sub) -> None:
    p = sub.add_parser("identity", help="decide identity review cases: link or unlink two records")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (("link", "the two records are one person"), ("unlink", "the two records are two people")):
        a = actions.add_parser(action, help=text)
        a.add_argument("left", help="record id, e.g. crm:1042")
        a.add_argument("right", help="record id, e.g. shop:77")
        a.add_argument("--reason", required=True, help="why (kept with the decision)")
        a.add_argument("--by", default=None, help="who decides (default: the OS user)")
        a.set_defaults(func=_identity_decide)


def _identity_decide(args: argparse.Namespace) -> int:
    from .identity.cli import decide  # imports the engine (pandas) only when it runs

    return decide(args)


COMMANDS = [_add_demo, _add_ui, _add_collector, _add_triggers, _add_exporter, _add_forget, _add_identity,
            add_deliver_command, add_up_command, add_lift_command, add_audience_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personalization", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
