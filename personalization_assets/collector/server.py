"""Run the collector under uvicorn: `run_collector(...)` is what `personalization collector` calls.

With several workers each process binds its own listening socket with SO_REUSEPORT, so the kernel
spreads connections evenly over the workers. (uvicorn's own workers share one socket: long-lived
keep-alive connections, as the tracking libraries keep, piled up on whichever worker accepted
first, often 15 of 16 on one worker.) Each worker also binds the admin address (/health,
/metrics) the same way; one uvicorn server per worker serves both sockets (`PortRouter`).
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

from ..bus import open_bus
from ..bus.base import DEFAULT_DEDUP_WINDOW_S
from .app import PortRouter, create_app
from .settings import SETTINGS_ENV, CollectorSettings


def tune_gc() -> None:
    """A /v1/batch request allocates thousands of short-lived, acyclic dicts and lists, which
    refcounting frees; at the default threshold (700) the cycle collector ran every few hundred
    events and kept re-walking the long-lived startup heap. Freeze that heap, collect less often."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 50)


def guarded_protocol(header_timeout_s: float, max_connections: int):
    """uvicorn's httptools protocol, plus a deadline for the request headers and a cap on open
    connections: a slowloris client that trickles its headers, or never sends any, is cut off."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.close()  # at the cap: refuse at once rather than hold it
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # bytes between requests (a kept-alive connection's next one, or junk)
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedHttpToolsProtocol


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def build_server(settings: CollectorSettings, public_sock: socket.socket, admin_sock: socket.socket,
                 app=None, admin_app=None, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for the collector on two bound sockets: public ingestion and admin.
    `app` defaults to create_app(settings); tests pass a wrapped app and its `admin_app`."""
    app = app or create_app(settings)
    admin_app = admin_app or app.state.admin
    routed = PortRouter(app, admin_app, admin_sock.getsockname()[1])
    config = uvicorn.Config(
        routed, log_level=log_level, access_log=False, loop="uvloop", lifespan="on",
        http=guarded_protocol(settings.header_timeout_s, settings.max_connections),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        limit_concurrency=settings.max_connections + 1,  # uvicorn counts connections: ours are capped first
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    server.collector_sockets = [public_sock, admin_sock]
    return server


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
    **limits,
) -> None:
    """Serve until interrupted. `bus_url` defaults to the deployment's bus (EVENT_BUS_URL or the
    local events.db); an empty `write_keys` accepts any key (local demo only). `limits`: the other
    CollectorSettings fields (admin_host, admin_port, header_timeout_s, body_timeout_s,
    keep_alive_timeout_s, max_connections)."""
    if bus_url is None:
        from ..settings import event_bus_url

        bus_url = event_bus_url()
    settings = CollectorSettings(
        bus_url=bus_url, write_keys=frozenset(write_keys), dedup_window_s=dedup_window_s,
        max_pending_events=max_pending_events, webhooks=dict(webhooks or {}), **limits,
    )
    open_bus(bus_url).close()  # a bad bus URL is one clear error here, not a failed start per worker
    common = dict(host=host, port=port, log_level=log_level)
    if port and settings.admin_port == port:
        raise RuntimeError(f"the admin port must differ from the public port ({port})")
    if workers <= 1:
        _serve(settings, common, reuse_port=False)
        return
    os.environ[SETTINGS_ENV] = settings.to_env()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="collector-metrics-"))
    _supervise(workers, common)


def _serve(settings: CollectorSettings, common: dict, reuse_port: bool) -> None:
    public = bind(common["host"], common["port"], reuse_port)
    admin = bind(settings.admin_host, settings.admin_port, reuse_port)
    server = build_server(settings, public, admin, log_level=common["log_level"])
    tune_gc()  # after the app is built: its heap is what gets frozen
    server.run(sockets=server.collector_sockets)


def _worker(common: dict) -> None:
    os.setpgrp()  # a terminal's Ctrl-C reaches the supervisor only, which stops each worker once
    _serve(CollectorSettings.from_env(), common, reuse_port=True)


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
            proc.join(30)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
