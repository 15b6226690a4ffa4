"""The webhook sub-app: POST /sendgrid, /mailgun, /generic (each only when its key is configured).

Order of work per request: size limit (413) -> signature and replay window (401) -> parse (400)
-> normalize -> append to the e-mail events bus (503 when that fails, so the provider retries).
Nothing is stored before the signature verifies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..collector import metrics
from ..email_events import Normalized, normalize
from .store import EmailEventStore
from .verify import (
    GENERIC_SIGNATURE, GENERIC_TIMESTAMP, SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP, Refused,
    verify_generic, verify_mailgun, verify_sendgrid,
)

log = logging.getLogger(__name__)
DEFAULT_MAX_BODY = 4 * 1024 * 1024  # SendGrid posts batches of up to ~1,000 events
DEFAULT_TOLERANCE_S = 300.0
SECRET_ENV = {"sendgrid": ("public_key", "SENDGRID_WEBHOOK_PUBLIC_KEY"),
              "mailgun": ("signing_key", "MAILGUN_WEBHOOK_SIGNING_KEY"),
              "generic": ("secret", "EMAIL_WEBHOOK_SECRET")}


def _json(status: int, body: dict) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Refused(413, "payload_too_large", f"body of {declared} bytes exceeds {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "payload_too_large", f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, "invalid_json", f"body is not JSON: {exc}") from None


def _secrets(config: dict) -> dict[str, str]:
    """Provider -> key, from config[provider][field] or the provider's environment variable."""
    found = {}
    for provider, (field, env) in SECRET_ENV.items():
        value = (config.get(provider) or {}).get(field) or os.environ.get(env)
        if value:
            found[provider] = value
    return found


def create_webhook_app(bus=None, config: dict | None = None, *, clock: Callable[[], float] = time.time) -> Starlette:
    """`config`: {"bus_url", "max_body_bytes", "tolerance_s", "sendgrid": {"public_key"},
    "mailgun": {"signing_key"}, "generic": {"secret"}}; keys may also come from the environment.

    E-mail events go to their own bus (`bus_url`, default EMAIL_EVENTS_BUS_URL or
    <data dir>/email_events.db). The collector's behavioural `bus` is used only when
    config["use_collector_bus"] is true (a deployment that wants a single Redis stream, say)."""
    config = dict(config or {})
    limit = int(config.get("max_body_bytes", DEFAULT_MAX_BODY))
    tolerance = float(config.get("tolerance_s", DEFAULT_TOLERANCE_S))
    secrets = _secrets(config)
    store = EmailEventStore(config.get("bus_url"), bus if config.get("use_collector_bus") else None)

    def verified_events(provider: str, request: Request, body: bytes) -> list:
        now = clock()
        if provider == "sendgrid":
            verify_sendgrid(secrets[provider], body, request.headers.get(SENDGRID_SIGNATURE),
                            request.headers.get(SENDGRID_TIMESTAMP), now, tolerance)
            payload = _parse(body)
            if not isinstance(payload, list):
                raise Refused(400, "invalid_shape", "SendGrid posts a JSON array of events")
            return payload
        if provider == "mailgun":
            payload = _parse(body)
            if not isinstance(payload, dict):
                raise Refused(401, "unsigned", "Mailgun payload is not a signed JSON object")
            verify_mailgun(secrets[provider], payload.get("signature"), now, tolerance)
            return [payload.get("event-data")]
        verify_generic(secrets[provider], body, request.headers.get(GENERIC_SIGNATURE),
                       request.headers.get(GENERIC_TIMESTAMP), now, tolerance)
        payload = _parse(body)
        if isinstance(payload, dict) and isinstance(payload.get("events"), list):
            return payload["events"]
        return payload if isinstance(payload, list) else [payload]

    def endpoint(provider: str):
        async def handler(request: Request) -> Response:
            try:
                body = await _read_limited(request, limit)
                events = verified_events(provider, request, body)
            except Refused as exc:
                metrics.WEBHOOK_EVENTS.labels(provider, "refused").inc()
                return _json(exc.status, {"code": exc.code, "message": exc.message})
            results = [normalize(provider, e) for e in events]
            good = [r for r in results if isinstance(r, Normalized)]
            bad = [r for r in results if not isinstance(r, Normalized)]
            try:
                appended = await asyncio.to_thread(store.append, good, bad)
            except Exception as exc:  # nothing acknowledged: the provider retries
                log.exception("e-mail events bus append failed")
                metrics.WEBHOOK_EVENTS.labels(provider, "bus_error").inc(len(events))
                return _json(503, {"code": "bus_unavailable", "message": f"{type(exc).__name__}: {exc}"})
            duplicates = sum(a.duplicate for a in appended)
            for outcome, n in (("accepted", len(good) - duplicates), ("duplicate", duplicates),
                               ("quarantined", len(bad))):
                if n:
                    metrics.WEBHOOK_EVENTS.labels(provider, outcome).inc(n)
            return _json(200, {"accepted": len(good) - duplicates, "duplicates": duplicates,
                               "quarantined": len(bad)})

        return handler

    routes = [Route(f"/{p}", endpoint(p), methods=["POST"]) for p in ("sendgrid", "mailgun", "generic")
              if p in secrets]
    app = Starlette(routes=routes)
    app.state.store = store
    return app
