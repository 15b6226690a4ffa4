"""One-click unsubscribe (RFC 8058): opaque links and the HTTP endpoint behind them.

Every marketing message carries `List-Unsubscribe: <https://.../unsubscribe?t=TOKEN>` and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`. The mailbox provider then POSTs
`List-Unsubscribe=One-Click` to that URL, as `multipart/form-data` (which RFC 8058 says it SHOULD
use) or urlencoded. The token (`unsubscribe_token`: the address, encrypted and authenticated, so
it shows no PII in logs and referrers) proves the link came from us, so no login or confirmation
is needed. A GET (a person clicking, or a link scanner) only shows a page with a button: RFC 8058
forbids unsubscribing on GET. That page shows the address masked (`a***@example.com`): scanners
and shared proxies fetch it too.

The body is read up to `MAX_BODY_BYTES` and no further: a one-click body is 26 bytes, and a
client that announces or streams more gets 413 before the server holds it in memory. It must
arrive within `body_timeout_s` (30 s), or 408 and the connection is closed. When the store fails,
the answer is a stable 503 with Retry-After (the provider retries); the detail is only logged.

Accepted unsubscribes are appended to the e-mail events bus as `unsubscribe` events of provider
`one_click`, the same path as the platforms' webhooks: staging.email_suppressions, then the
sticky `activation.suppression` list.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import logging
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from ..email_events.model import Normalized
from ..privacy import mask_email
from .unsubscribe_token import make_token, read_token

__all__ = ["make_token", "read_token", "unsubscribe_url", "unsubscribe_event", "create_unsubscribe_app",
           "app_from_env", "MAX_BODY_BYTES"]

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
ONE_CLICK_FIELD, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"
PROVIDER = "one_click"
MAX_BODY_BYTES = 8 * 1024  # room for a multipart envelope and a few extra fields, nothing more
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
BODY_TIMEOUT_S = 30.0
RETRY_AFTER_S = 60
log = logging.getLogger(__name__)


def unsubscribe_url(base_url: str, secret: str, email: str) -> str:
    if not base_url.startswith("https://"):
        raise ValueError(f"the one-click unsubscribe URL must be https (RFC 8058), not {base_url!r}")
    return f"{base_url}?{urlencode({'t': make_token(secret, email)})}"


def unsubscribe_event(email: str, token: str, at: datetime) -> Normalized:
    """One event per address and token: a repeated POST is stored once (same provider event id)."""
    event_id = hashlib.sha256(token.encode()).hexdigest()[:32]
    return Normalized(provider=PROVIDER, provider_event_id=event_id, type="unsubscribe", email=email, timestamp=at)


class BodyRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_capped_body(request: Request, limit: int = MAX_BODY_BYTES,
                           timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """The request body, or BodyRefused(413) as soon as it is known to exceed `limit` bytes, or
    BodyRefused(408) when it has not all arrived within `timeout_s`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BodyRefused(400, f"Content-Length {declared[:20]!r} is not a number")
        if int(declared) > limit:
            raise BodyRefused(413, f"the body is {declared} bytes; at most {limit} are read here")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyRefused(413, f"the body is over {limit} bytes; at most {limit} are read here")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyRefused(408, f"the body did not arrive within {timeout_s:g} s") from None
    return b"".join(chunks)


async def is_one_click(request: Request, body: bytes) -> bool:
    """True when the body says `List-Unsubscribe=One-Click`, as a form field (multipart or
    urlencoded) or, from a client that sends no form type, as the bare RFC 8058 text."""
    content_type = request.headers.get("content-type", "").lower()
    if not content_type.startswith(FORM_TYPES):
        return body.decode(errors="replace").strip() == ONE_CLICK_BODY
    sent = False

    async def replay() -> dict:  # the form parser reads the capped body, never the socket again
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        async with Request(request.scope, replay).form(max_files=4, max_fields=32) as form:
            values = form.getlist(ONE_CLICK_FIELD)
            return any(not isinstance(v, UploadFile) and v.strip() == ONE_CLICK_VALUE for v in values)
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", "")
        raise BodyRefused(400, f"the form body cannot be parsed: {detail}") from None


def create_unsubscribe_app(secret: str, record: Callable[[Normalized], None],
                           clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                           accept_legacy_tokens: bool = True, max_body_bytes: int = MAX_BODY_BYTES,
                           body_timeout_s: float = BODY_TIMEOUT_S,
                           close: Callable[[], None] | None = None) -> Starlette:
    """`record` stores one unsubscribe event (e.g. `EmailEventStore.append([event], [])`);
    `close`, if given, releases its store when the server shuts down.
    `accept_legacy_tokens`: see `unsubscribe_token` (the migration window of the old links)."""

    async def unsubscribe(request: Request):
        token = request.query_params.get("t", "")
        email = read_token(secret, token, accept_legacy=accept_legacy_tokens)
        if email is None:
            return PlainTextResponse("invalid or expired unsubscribe link", status_code=400)
        if request.method == "GET":
            page = (f"<!doctype html><title>Unsubscribe</title><form method='post'>"
                    f"<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
                    f"<p>Stop e-mails to {html.escape(mask_email(email))}?</p><button>Unsubscribe</button></form>")
            return HTMLResponse(page)
        try:
            body = await read_capped_body(request, max_body_bytes, body_timeout_s)
            one_click = await is_one_click(request, body)
        except ClientDisconnect:  # gone before the body arrived: nothing to answer, nothing stored
            return PlainTextResponse("client disconnected", status_code=400)
        except BodyRefused as refused:
            # Close the connection: the rest of an oversized body is never read.
            return PlainTextResponse(str(refused), status_code=refused.status, headers={"Connection": "close"})
        if not one_click:
            return PlainTextResponse(f"expected the form field {ONE_CLICK_BODY!r} (RFC 8058)", status_code=400)
        try:
            await asyncio.to_thread(record, unsubscribe_event(email, token, clock()))
        except Exception:  # nothing stored: the provider retries the same link
            log.exception("one-click unsubscribe could not be stored")
            return PlainTextResponse("the unsubscribe could not be stored right now; retry later",
                                     status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        return PlainTextResponse("unsubscribed")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            yield
        finally:
            if close is not None:
                close()

    return Starlette(routes=[Route("/unsubscribe", unsubscribe, methods=["GET", "POST"])], lifespan=lifespan)


def app_from_env() -> Starlette:
    """The endpoint as deployed: `UNSUBSCRIBE_SECRET` keys the links, and accepted unsubscribes
    go to the e-mail events bus (`EMAIL_EVENTS_BUS_URL` or the local file).
    `UNSUBSCRIBE_ACCEPT_LEGACY_TOKENS=0` ends the migration window of the old readable links.
    Serve it with `uvicorn --factory personalization_assets.activation.unsubscribe:app_from_env`."""
    import os

    from ..webhooks.store import EmailEventStore

    secret = os.environ.get("UNSUBSCRIBE_SECRET", "")
    if not secret:
        raise ValueError("UNSUBSCRIBE_SECRET is not set: it keys and verifies the one-click links")
    legacy = os.environ.get("UNSUBSCRIBE_ACCEPT_LEGACY_TOKENS", "1").strip().lower() not in {"0", "false", "no"}
    store = EmailEventStore()
    return create_unsubscribe_app(secret, lambda event: store.append([event], []), accept_legacy_tokens=legacy,
                                  close=store.close)
