"""The webhook sub-app: POST /sendgrid, /mailgun, /generic (each only when its key is configured).

Order of work per request: size limit (413) and body deadline (408) -> signature and replay window
(401; for Mailgun also a token seen before, see replay.py) -> parse (400) -> normalize, where any
event that cannot be normalized (even one that breaks the normalizer) is quarantined with its
reason -> append to the e-mail events bus (503 when that fails, so the provider retries).
Nothing is stored before the signature verifies. Error bodies are a stable {"code", "message"}.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from typing import Callable

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..collector import metrics
from ..collector.app import read_body
from ..collector.deepjson import InvalidJSON, holds_too_deep, loads_tolerant
from ..collector.intake import storable
from ..email_events import Normalized, normalize
from ..email_events.bus import email_events_bus_url
from ..email_events.model import Rejected
from .replay import open_token_ledger
from .store import EmailEventStore
from .verify import (
    GENERIC_SIGNATURE, GENERIC_TIMESTAMP, SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP, Refused,
    verify_generic, verify_mailgun, verify_sendgrid,
)

log = logging.getLogger(__name__)
DEFAULT_MAX_BODY = 4 * 1024 * 1024  # SendGrid posts batches of up to ~1,000 events
DEFAULT_TOLERANCE_S = 300.0
DEFAULT_BODY_TIMEOUT_S = 30.0
SECRET_ENV = {"sendgrid": ("public_key", "SENDGRID_WEBHOOK_PUBLIC_KEY"),
              "mailgun": ("signing_key", "MAILGUN_WEBHOOK_SIGNING_KEY"),
              "generic": ("secret", "EMAIL_WEBHOOK_SECRET")}


def _json(status: int, body: dict, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


async def _read_limited(request: Request, limit: int, timeout_s: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Refused(413, "payload_too_large", f"body of {declared} bytes exceeds {limit}")
    return await read_body(request, limit, timeout_s, error=Refused)


def _safe_normalize(provider: str, event) -> Normalized | Rejected:
    """normalize(), but an event that breaks it (nested 980 levels deep, a time that overflows)
    or holds a part too deep to parse (`TooDeep`) is quarantined with the reason instead of
    failing the whole signed request."""
    try:
        if holds_too_deep(event):
            raise RecursionError("a part of the event is nested past the JSON parser's limit")
        return normalize(provider, event)
    except Exception as exc:
        text = orjson.dumps(storable(event), option=orjson.OPT_SORT_KEYS).decode()
        deep = isinstance(exc, RecursionError)
        data = event.get("event-data") if isinstance(event, dict) and isinstance(event.get("event-data"), dict) \
            else event
        ident = next((data[k] for k in ("sg_event_id", "id") if isinstance(data, dict)
                      and isinstance(data.get(k), (str, int)) and data.get(k)), None)
        record_id = f"{provider}:{ident}" if ident is not None else \
            f"{provider}:sha256:{hashlib.sha256(text.encode()).hexdigest()[:32]}"
        if not deep:
            log.debug("%s event could not be normalized: %s: %s", provider, type(exc).__name__, exc)
        return Rejected(provider, record_id, "payload.too_deep" if deep else "payload.invalid",
                        "event is nested too deeply to process" if deep else
                        f"event cannot be normalized: {type(exc).__name__}: {str(exc)[:120]}", text)


def _parse(body: bytes):
    """The JSON body; a part nested past orjson's limit becomes a `TooDeep`, so that one event
    is quarantined rather than the whole signed request refused."""
    try:
        return loads_tolerant(body)
    except InvalidJSON as exc:
        raise Refused(400, "invalid_json", f"body is not JSON: {str(exc)[:200]}") from None


def _secrets(config: dict) -> dict[str, str]:
    """Provider -> key, from config[provider][field] or the provider's environment variable."""
    found = {}
    for provider, (field, env) in SECRET_ENV.items():
        value = (config.get(provider) or {}).get(field) or os.environ.get(env)
        if value:
            found[provider] = value
    return found


def create_webhook_app(bus=None, config: dict | None = None, *, clock: Callable[[], float] = time.time) -> Starlette:
    """`config`: {"bus_url", "max_body_bytes", "tolerance_s", "body_timeout_s", "sendgrid": {"public_key"},
    "mailgun": {"signing_key"}, "generic": {"secret"}}; keys may also come from the environment.

    E-mail events go to their own bus (`bus_url`, default EMAIL_EVENTS_BUS_URL or
    <data dir>/email_events.db). The collector's behavioural `bus` is used only when
    config["use_collector_bus"] is true (a deployment that wants a single Redis stream, say)."""
    config = dict(config or {})
    limit = int(config.get("max_body_bytes", DEFAULT_MAX_BODY))
    tolerance = float(config.get("tolerance_s", DEFAULT_TOLERANCE_S))
    body_timeout = float(config.get("body_timeout_s", DEFAULT_BODY_TIMEOUT_S))
    secrets = _secrets(config)
    store = EmailEventStore(config.get("bus_url"), bus if config.get("use_collector_bus") else None)
    ledgers: dict = {}  # opened on first use: the bus location may come from the environment
    ledger_lock = threading.Lock()

    def tokens():
        with ledger_lock:
            if "ledger" not in ledgers:
                ledgers["ledger"] = open_token_ledger(store.bus_url or email_events_bus_url(), 2 * tolerance + 60)
            return ledgers["ledger"]

    def verified_events(provider: str, request: Request, body: bytes) -> tuple[list, str | None]:
        """The events of a verified request, and the single-use token to claim (Mailgun)."""
        now = clock()
        if provider == "sendgrid":
            verify_sendgrid(secrets[provider], body, request.headers.get(SENDGRID_SIGNATURE),
                            request.headers.get(SENDGRID_TIMESTAMP), now, tolerance)
            payload = _parse(body)
            if not isinstance(payload, list):
                raise Refused(400, "invalid_shape", "SendGrid posts a JSON array of events")
            return payload, None
        if provider == "mailgun":
            payload = _parse(body)
            if not isinstance(payload, dict):
                raise Refused(401, "unsigned", "Mailgun payload is not a signed JSON object")
            verify_mailgun(secrets[provider], payload.get("signature"), now, tolerance)
            return [payload.get("event-data")], payload["signature"]["token"]
        verify_generic(secrets[provider], body, request.headers.get(GENERIC_SIGNATURE),
                       request.headers.get(GENERIC_TIMESTAMP), now, tolerance)
        payload = _parse(body)
        if isinstance(payload, dict) and isinstance(payload.get("events"), list):
            return payload["events"], None
        return (payload if isinstance(payload, list) else [payload]), None

    def endpoint(provider: str):
        async def handler(request: Request) -> Response:
            token = None
            try:
                body = await _read_limited(request, limit, body_timeout)
                events, token = verified_events(provider, request, body)
                if token is not None and not await asyncio.to_thread(tokens().claim, provider, token):
                    token = None  # not ours to release
                    raise Refused(401, "replayed", "this signature token was already used; "
                                  "a signed request is accepted once")
            except Refused as exc:
                metrics.WEBHOOK_EVENTS.labels(provider, "refused").inc()
                return _json(exc.status, {"code": exc.code, "message": exc.message},
                             {"Connection": "close"} if exc.status == 408 else None)
            except Exception:
                log.exception("webhook %s: could not check the request", provider)
                return _json(503, {"code": "unavailable", "message": "the request could not be checked; "
                                   "nothing was stored, retry later"})
            results = [_safe_normalize(provider, e) for e in events]
            good = [r for r in results if isinstance(r, Normalized)]
            bad = [r for r in results if not isinstance(r, Normalized)]
            try:
                appended = await asyncio.to_thread(store.append, good, bad)
            except Exception:  # nothing acknowledged: the provider retries (with the same token)
                log.exception("e-mail events bus append failed")
                if token is not None:
                    await asyncio.to_thread(tokens().release, provider, token)
                metrics.WEBHOOK_EVENTS.labels(provider, "bus_error").inc(len(events))
                return _json(503, {"code": "bus_unavailable", "message": "the e-mail events bus is "
                                   "unavailable; nothing was stored, retry later"})
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

    def close() -> None:
        """Close the e-mail events bus and the token ledger (the collector's shutdown calls it: a
        mounted app's own lifespan never runs)."""
        store.close()
        with ledger_lock:
            if (ledger := ledgers.pop("ledger", None)) is not None:
                ledger.close()

    app = Starlette(routes=routes)
    app.state.store, app.state.close = store, close
    return app
