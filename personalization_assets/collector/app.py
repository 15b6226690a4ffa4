"""The collector's ASGI apps (Starlette): the public one (Segment HTTP Tracking API, webhooks) and the
admin one (/health, /metrics), which the server serves on a separate loopback port.

Error bodies are a stable {"code", "message"}; exception text and internal addresses go to the log
only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from datetime import datetime, timezone

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from ..bus import open_bus, open_quarantine_bus
from . import metrics
from .intake import split, usable_shared
from .settings import CollectorSettings
from .wire import MAX_BATCH_BYTES, MAX_EVENT_BYTES, WireError, decode_body, events_from, parse_json_object, write_key_from
from .writer import Backpressure, GroupCommitWriter

log = logging.getLogger(__name__)
_SINGLE = ("track", "identify", "page", "screen", "group", "alias")


class BusFailure(Exception):
    """The bus append behind a request failed."""


def _json(status: int, body: dict, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return _json(status, {"code": code, "message": message}, headers)


async def read_body(request: Request, limit: int, timeout_s: float, error=WireError) -> bytes:
    """The body, refused when over `limit` bytes (413) or not all there within `timeout_s` (408)."""
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise error(413, "payload_too_large", f"request body exceeds {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise error(408, "request_timeout", f"the request body did not arrive within {timeout_s:g} s") from None
    return b"".join(chunks)


CLOSE = {"Connection": "close"}  # after a 408 the rest of the body may still be on the way


def create_app(settings: CollectorSettings) -> Starlette:
    state: dict = {}
    keys = settings.write_keys

    def check_key(key: str | None) -> None:
        if keys and key not in keys:
            raise WireError(401, "unauthorized", "missing or unknown write key")

    async def ingest(request: Request, endpoint_type: str | None) -> Response:
        limit = MAX_BATCH_BYTES if endpoint_type is None else MAX_EVENT_BYTES
        header_key = request.headers.get("authorization")
        if header_key:
            check_key(write_key_from(header_key, {}))
        raw = await read_body(request, limit, settings.body_timeout_s)
        body = parse_json_object(decode_body(raw, request.headers.get("content-encoding"), limit))
        if not header_key:
            check_key(write_key_from(None, body))
        raw_events, shared = events_from(body, endpoint_type)
        shared, ignored = usable_shared(shared)
        for name, reason in ignored.items():
            metrics.REQUEST_FIELDS_IGNORED.labels(name).inc()
            log.info("%s: batch field ignored: %s", request.url.path, reason)
        received_at = datetime.now(timezone.utc)
        accepted, quarantined = split(raw_events, shared, received_at, request.url.path)
        done = {"ignored": ignored} if ignored else {}
        if not accepted and not quarantined:
            return _json(200, {"success": True, "accepted": 0, "quarantined": 0, "duplicates": 0, **done})
        future = state["writer"].submit(accepted, quarantined)
        try:
            result = await asyncio.wrap_future(future)
        except Exception as exc:
            raise BusFailure(f"event bus append failed: {type(exc).__name__}: {exc}") from exc
        dups = sum(a.duplicate for a in result.events)
        by_type = Counter(ev["type"] for ev, a in zip(accepted, result.events) if not a.duplicate)
        for kind, n in by_type.items():
            metrics.EVENTS_ACCEPTED.labels(kind).inc(n)
        for reason, n in Counter(metrics.reason_label(q["rule"]) for q in quarantined).items():
            metrics.EVENTS_REJECTED.labels(reason).inc(n)
        if dups:
            metrics.EVENTS_DEDUPLICATED.inc(dups)
        if accepted:
            metrics.LAST_EVENT_TIMESTAMP.set(received_at.timestamp())
        return _json(200, {"success": True, "accepted": len(accepted) - dups,
                           "quarantined": len(quarantined), "duplicates": dups, **done})

    def endpoint(endpoint_type: str | None):
        async def handler(request: Request) -> Response:
            t0 = time.perf_counter()
            path = request.url.path
            try:
                response = await ingest(request, endpoint_type)
            except WireError as exc:
                response = _error(exc.status, exc.code, exc.message, CLOSE if exc.status == 408 else None)
            except Backpressure as exc:
                response = _error(429, "too_many_requests", f"{exc}; retry later",
                                  {"Retry-After": str(settings.retry_after_s)})
            except BusFailure:  # nothing acknowledged: the client retries
                log.exception("bus append failed on %s", path)
                response = _error(503, "bus_unavailable", "the event bus is unavailable; nothing was "
                                  "stored, retry later", {"Retry-After": str(settings.retry_after_s)})
            except Exception:
                log.exception("collector error on %s", path)
                response = _error(500, "internal_error", "the collector could not process this request;"
                                  " nothing was stored, retry later")
            metrics.REQUESTS.labels(path, str(response.status_code)).inc()
            metrics.REQUEST_DURATION.labels(path).observe(time.perf_counter() - t0)
            return response

        return handler

    routes = [Route("/v1/batch", endpoint(None), methods=["POST"]),
              Route("/v1/import", endpoint(None), methods=["POST"])]
    routes += [Route(f"/v1/{t}", endpoint(t), methods=["POST"]) for t in _SINGLE]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        state["bus"] = bus = open_bus(settings.bus_url, dedup_window_s=settings.dedup_window_s)
        state["quarantine"] = qbus = open_quarantine_bus(settings.bus_url, dedup_window_s=settings.dedup_window_s)
        state["writer"] = writer = GroupCommitWriter(
            bus, qbus, settings.max_pending_events, settings.max_commit_events
        )
        app.state.bus, app.state.quarantine_bus = bus, qbus
        try:
            yield
        finally:
            if webhooks is not None:  # its e-mail events bus and token ledger
                webhooks.state.close()
            writer.close()
            bus.close()
            qbus.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    webhooks = _webhook_app(state, settings)
    if webhooks is not None:
        app.router.routes.append(Mount("/webhooks", app=webhooks))
    app.state.admin = create_admin_app(state)
    return app


def create_admin_app(state: dict) -> Starlette:
    """/health and /metrics over the collector's `state` (its bus and writer)."""

    async def health(request: Request) -> Response:
        writer = state.get("writer")
        ok = writer is not None and writer._thread.is_alive()
        return _json(200 if ok else 503, {"status": "ok" if ok else "starting", "worker_pid": os.getpid(),
                                          "bus": repr(state.get("bus")),
                                          "pending_events": writer.pending if writer else None})

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return Starlette(routes=[Route("/health", health, methods=["GET"]),
                             Route("/metrics", metrics_endpoint, methods=["GET"])])


class PortRouter:
    """One server, two listening sockets: requests to `admin_port` go to the admin app, all others
    (and the lifespan) to the public app, which therefore has no /health or /metrics."""

    def __init__(self, public, admin, admin_port: int) -> None:
        self.public, self.admin, self.admin_port = public, admin, admin_port

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (scope.get("server") or (None, None))[1] == self.admin_port:
            return await self.admin(scope, receive, send)
        return await self.public(scope, receive, send)


class _LazyBus:
    """Hands the webhook app the collector's bus, which only exists once the app has started."""

    def __init__(self, state: dict) -> None:
        self._state = state

    def __getattr__(self, name: str):
        bus = self._state.get("bus")
        if bus is None:
            raise RuntimeError("the collector has not started its event bus yet")
        return getattr(bus, name)


def _webhook_app(state: dict, settings: CollectorSettings):
    try:
        from ..webhooks import create_webhook_app  # type: ignore[attr-defined]
    except ModuleNotFoundError as exc:
        if exc.name not in ("personalization_assets.webhooks",):
            raise  # the module exists but is broken: say so instead of silently not mounting
        return None
    return create_webhook_app(_LazyBus(state), {"body_timeout_s": settings.body_timeout_s, **settings.webhooks})
