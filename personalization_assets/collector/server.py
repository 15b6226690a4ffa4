"""Run the collector under uvicorn: `run_collector(...)` is what `personalization collector` calls.

With several workers each process binds its own listening socket with SO_REUSEPORT, so the kernel
spreads connections evenly over the workers. (uvicorn's own workers share one socket: long-lived
keep-alive connections, as the tracking libraries keep, piled up on whichever worker accepted
first, often 15 of 16 on one worker.)
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from typing import Iterable

import uvicorn

from ..bus.base import DEFAULT_DEDUP_WINDOW_S
from .app import create_app
from .settings import SETTINGS_ENV, CollectorSettings


def tune_gc() -> None:
    """A /v1/batch request allocates thousands of short-lived, acyclic dicts and lists, which
    refcounting frees; at the default threshold (700) the cycle collector ran every few hundred
    events and kept re-walking the long-lived startup heap. Freeze that heap, collect less often."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 50)


def app_from_env():
    """uvicorn factory for worker processes: settings travel in an environment variable."""
    app = create_app(CollectorSettings.from_env())
    tune_gc()
    return app


def run_collector(
    host: str = "127.0.0.1",
    port: int = 8088,
    bus_url: str | None = None,
    write_keys: Iterable[str] = (),
    *,
    workers: int = 1,
    dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S,
    max_pending_events: int = 100_000,
    webhooks: dict | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until interrupted. `bus_url` defaults to the deployment's bus (EVENT_BUS_URL or the
    local events.db); an empty `write_keys` accepts any key (local demo only)."""
    if bus_url is None:
        from ..settings import event_bus_url

        bus_url = event_bus_url()
    settings = CollectorSettings(
        bus_url=bus_url, write_keys=frozenset(write_keys), dedup_window_s=dedup_window_s,
        max_pending_events=max_pending_events, webhooks=dict(webhooks or {}),
    )
    common = dict(host=host, port=port, log_level=log_level, access_log=False,
                  http="httptools", loop="uvloop", timeout_graceful_shutdown=10)
    if workers <= 1:
        app = create_app(settings)
        tune_gc()
        uvicorn.run(app, **common)
        return
    os.environ[SETTINGS_ENV] = settings.to_env()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="collector-metrics-"))
    _supervise(workers, common)


def _reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _worker(common: dict) -> None:
    os.setpgrp()  # a terminal's Ctrl-C reaches the supervisor only, which stops each worker once
    config = dict(common)
    sock = _reuseport_socket(config.pop("host"), config.pop("port"))
    uvicorn.Server(uvicorn.Config(app_from_env, factory=True, **config)).run(sockets=[sock])


def _supervise(workers: int, common: dict) -> None:
    """Start the workers, restart one that dies, and stop them all (gracefully) on SIGINT/SIGTERM."""
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: dict = {}  # process -> start time
    early_exits, last_code = 0, None  # workers in a row that died within 5 s of their start
    try:
        while not stopping:
            for proc, started in list(procs.items()):
                if not proc.is_alive():
                    del procs[proc]
                    early = time.monotonic() - started < 5
                    early_exits, last_code = (early_exits + 1 if early else 0), proc.exitcode
            if early_exits >= 3:  # e.g. the port is taken or the bus cannot be opened
                raise RuntimeError(f"collector workers keep exiting at start (last exit code "
                                   f"{last_code}); see their log above")
            while len(procs) < workers and not stopping:
                proc = ctx.Process(target=_worker, args=(common,), name="collector-worker")
                proc.start()
                procs[proc] = time.monotonic()
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)  # uvicorn drains: queued events are still committed
        for proc in procs:
            proc.join(common.get("timeout_graceful_shutdown", 10) + 20)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
