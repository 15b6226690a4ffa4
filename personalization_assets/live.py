"""`personalization up`: the live system in one command.

Starts the collector, the trigger engine, the sender and `dagster dev` (webserver and daemon: the
automation sensor, the schedules and the stream sensors run by default locally), each as its own
process on 127.0.0.1, waits until each answers, and prints where it listens. Ctrl-C (or SIGTERM)
stops them in the order data flows, so nothing is cut off mid-way: the collector first (no new
events), then the engine, the sender and Dagster; a process that does not stop within its grace
period is killed. If one of them dies on its own, the others are stopped too and the command says
which one and how it exited.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

GRACE_S = {"collector": 10.0, "triggers": 10.0, "deliver": 15.0, "dagster": 30.0}


@dataclass
class Service:
    name: str
    command: list[str]
    probe: str | None  # URL that answers 200 once it is ready; None: alive after a moment is ready
    where: str  # printed once ready
    process: subprocess.Popen | None = field(default=None, repr=False)


def _restore_default_signals() -> None:
    """In the child before exec: SIGINT/SIGTERM back to their defaults. A process started from a
    script in the background inherits them ignored, and `dagster dev` then never stops."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def services(args: argparse.Namespace) -> list[Service]:
    """What `up` starts, in the order data flows (and the order they stop)."""
    me = [sys.executable, "-m", "personalization_assets.cli"]
    dagster = Path(sys.executable).with_name("dagster")
    host = args.host
    found = [
        Service("collector", me + ["collector", "--host", host, "--port", str(args.collector_port),
                                   "--admin-host", host, "--admin-port", str(args.admin_port)],
                f"http://{host}:{args.admin_port}/health",
                f"collector     http://{host}:{args.collector_port}/v1/batch (health and metrics on :{args.admin_port})"),
        Service("triggers", me + ["triggers", "--port", str(args.triggers_port)] +
                (["--allow-unknown"] if args.allow_unknown else []),
                f"http://127.0.0.1:{args.triggers_port}/metrics",
                f"trigger engine consuming the event bus; metrics http://127.0.0.1:{args.triggers_port}/metrics"),
    ]
    if not args.no_deliver:
        channel = args.channel or os.environ.get("DELIVERY_CHANNEL") or ("smtp" if os.environ.get("SMTP_HOST") else "preview")
        found.append(Service(
            "deliver", me + ["deliver", "--channel", channel, "--page-port", str(args.page_port)] +
            (["--allow-unknown"] if args.allow_unknown else []),
            f"http://127.0.0.1:{args.page_port}/",
            f"sender        outbox page http://127.0.0.1:{args.page_port}/ (sent and suppressed e-mails; "
            f"channel {channel}{': nothing leaves the machine' if channel == 'preview' else ''})"))
    found.append(Service(
        "dagster", [str(dagster) if dagster.exists() else "dagster", "dev", "-m", "personalization_assets.definitions",
                    "--host", host, "--port", str(args.ui_port)],
        f"http://{host}:{args.ui_port}/server_info",
        f"Dagster UI    http://{host}:{args.ui_port} (daemon: automation, schedules, stream sensors)"))
    return found


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start(service: Service, env: dict[str, str]) -> None:
    service.process = subprocess.Popen(service.command, env=env, start_new_session=True,
                                       preexec_fn=_restore_default_signals)


def wait_ready(service: Service, timeout_s: float) -> None:
    """Until the service answers (or, without a probe, stays up for a second)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = service.process.poll()
        if code is not None:
            raise RuntimeError(f"{service.name} exited with code {code} while starting: see its output above")
        if service.probe is None or _answers(service.probe):
            return
        time.sleep(0.25)
    raise RuntimeError(f"{service.name} did not answer {service.probe} within {timeout_s:.0f} s")


def stop(service: Service) -> int | None:
    """SIGINT to the service's process group (its workers and run processes too), then SIGTERM,
    then SIGKILL once each grace period has passed. Returns the exit code."""
    proc = service.process
    if proc is None:
        return None
    grace = GRACE_S.get(service.name, 10.0)
    for sig, wait_s in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            print(f"up: {service.name} still running {wait_s:.0f} s after {sig.name}", file=sys.stderr, flush=True)
    try:  # what is left of its group (a worker that outlived its parent)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.wait()


class _Stop(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    from .cli import UserError, instance_home

    home = instance_home(os.environ.get("DAGSTER_HOME") or args.dagster_home)
    data = Path(os.environ.get("PERSONALIZATION_DATA_DIR") or args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DAGSTER_HOME=str(home), PERSONALIZATION_DATA_DIR=str(data),
               PYTHONWARNINGS="ignore::FutureWarning", PYTHONUNBUFFERED="1")
    planned = services(args)
    busy = [f"{p} ({s.name})" for s in planned for p in _ports(s) if not port_free(args.host, p)]
    if busy:
        raise UserError(f"port(s) in use: {', '.join(busy)}; stop what holds them or pick others (see --help)")

    def on_signal(signum, _frame):
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    started: list[Service] = []
    code = 0
    try:
        print(f"up: data {data}, Dagster instance {home}", flush=True)
        for service in planned:
            start(service, env)
            started.append(service)
            wait_ready(service, args.start_timeout)
        print("up: the live system is running; Ctrl-C stops it\n  " + "\n  ".join(s.where for s in planned), flush=True)
        if args.no_deliver:
            print("  (no sender: --no-deliver; fires stay in the ledger)", flush=True)
        while True:
            for service in started:
                exited = service.process.poll()
                if exited is not None:
                    raise RuntimeError(f"{service.name} exited with code {exited}; stopping the others")
            time.sleep(0.5)
    except _Stop as why:
        print(f"\nup: {why} received, stopping", flush=True)
    except RuntimeError as exc:
        print(f"up: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the shutdown short
            signal.signal(sig, signal.SIG_IGN)
        for service in started:
            exit_code = stop(service)
            print(f"up: {service.name} stopped (exit {exit_code})", flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _ports(service: Service) -> list[int]:
    ports, flags = [], {"--port", "--admin-port", "--page-port"}
    for flag, value in zip(service.command, service.command[1:]):
        if flag in flags and value.isdigit() and int(value) > 0:
            ports.append(int(value))
    return ports


def add_up_command(sub) -> None:
    p = sub.add_parser("up", help="start the live system: collector, trigger engine, sender and Dagster (UI + daemon)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address of the collector and the Dagster UI")
    p.add_argument("--collector-port", type=int, default=8088, help="collector's public port (events, webhooks)")
    p.add_argument("--admin-port", type=int, default=8089, help="collector's /health and /metrics")
    p.add_argument("--triggers-port", type=int, default=9108, help="trigger engine's /metrics")
    p.add_argument("--page-port", type=int, default=8090, help="sender's outbox page")
    p.add_argument("--ui-port", type=int, default=3000, help="Dagster UI")
    p.add_argument("--data-dir", default=".data", help="warehouse, bus, ledger and outbox "
                   "(PERSONALIZATION_DATA_DIR wins when set)")
    p.add_argument("--dagster-home", default=".dagster_home", help="Dagster instance (DAGSTER_HOME wins when set)")
    p.add_argument("--allow-unknown", action="store_true",
                   help="engine and sender message customers missing from the guard store (demo only)")
    p.add_argument("--channel", default=None, choices=("smtp", "webhook", "braze", "preview"),
                   help="where the sender sends (None: DELIVERY_CHANNEL, else smtp when SMTP_HOST is set, "
                        "else preview: shown on the outbox page only)")
    p.add_argument("--no-deliver", action="store_true", help="do not start the sender")
    p.add_argument("--start-timeout", type=float, default=120.0, help="seconds each service has to answer")
    p.set_defaults(func=run)
