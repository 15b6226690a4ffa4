"""Run the collector under uvicorn: `run_collector(...)` is what `personalization collector` calls."""

from __future__ import annotations

import gc
import os
import tempfile
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
    uvicorn.run("personalization_assets.collector.server:app_from_env", factory=True, workers=workers, **common)
