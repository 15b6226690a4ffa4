"""One-click unsubscribe (RFC 8058): signed links and the HTTP endpoint behind them.

Every marketing message carries `List-Unsubscribe: <https://.../unsubscribe?t=TOKEN>` and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`. The mailbox provider then POSTs
`List-Unsubscribe=One-Click` to that URL; the token (the address and an HMAC-SHA256 of it) proves
the link came from us, so no login or confirmation is needed. A GET (a person clicking, or a link
scanner) only shows a page with a button: RFC 8058 forbids unsubscribing on GET.

Accepted unsubscribes are appended to the e-mail events bus as `unsubscribe` events of provider
`one_click`, the same path as the platforms' webhooks: staging.email_suppressions, then the
sticky `activation.suppression` list.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from ..email_events.model import Normalized

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
PROVIDER = "one_click"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: str, email: str) -> str:
    address = email.strip().lower().encode()
    return _b64(address) + "." + _b64(hmac.new(secret.encode(), address, hashlib.sha256).digest())


def read_token(secret: str, token: str) -> str | None:
    """The address a token was made for, or None when it is malformed or forged."""
    try:
        encoded, mac = token.split(".", 1)
        address = _unb64(encoded)
        expected = hmac.new(secret.encode(), address, hashlib.sha256).digest()
        return address.decode() if hmac.compare_digest(expected, _unb64(mac)) else None
    except (ValueError, UnicodeDecodeError):
        return None


def unsubscribe_url(base_url: str, secret: str, email: str) -> str:
    if not base_url.startswith("https://"):
        raise ValueError(f"the one-click unsubscribe URL must be https (RFC 8058), not {base_url!r}")
    return f"{base_url}?{urlencode({'t': make_token(secret, email)})}"


def unsubscribe_event(email: str, token: str, at: datetime) -> Normalized:
    """One event per address and token: a repeated POST is stored once (same provider event id)."""
    event_id = hashlib.sha256(token.encode()).hexdigest()[:32]
    return Normalized(provider=PROVIDER, provider_event_id=event_id, type="unsubscribe", email=email, timestamp=at)


def create_unsubscribe_app(secret: str, record: Callable[[Normalized], None],
                           clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> Starlette:
    """`record` stores one unsubscribe event (e.g. `EmailEventStore.append([event], [])`)."""

    async def unsubscribe(request: Request):
        token = request.query_params.get("t", "")
        email = read_token(secret, token)
        if email is None:
            return PlainTextResponse("invalid or expired unsubscribe link", status_code=400)
        if request.method == "GET":
            page = (f"<!doctype html><title>Unsubscribe</title><form method='post'>"
                    f"<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
                    f"<p>Stop e-mails to {html.escape(email)}?</p><button>Unsubscribe</button></form>")
            return HTMLResponse(page)
        body = (await request.body()).decode(errors="replace").strip()
        if body != ONE_CLICK_BODY:
            return PlainTextResponse(f"expected the body {ONE_CLICK_BODY!r} (RFC 8058)", status_code=400)
        record(unsubscribe_event(email, token, clock()))
        return PlainTextResponse("unsubscribed")

    return Starlette(routes=[Route("/unsubscribe", unsubscribe, methods=["GET", "POST"])])


def app_from_env() -> Starlette:
    """The endpoint as deployed: `UNSUBSCRIBE_SECRET` signs the links, and accepted unsubscribes
    go to the e-mail events bus (`EMAIL_EVENTS_BUS_URL` or the local file). Serve it with
    `uvicorn --factory personalization_assets.activation.unsubscribe:app_from_env`."""
    import os

    from ..webhooks.store import EmailEventStore

    secret = os.environ.get("UNSUBSCRIBE_SECRET", "")
    if not secret:
        raise ValueError("UNSUBSCRIBE_SECRET is not set: it signs and verifies the one-click links")
    store = EmailEventStore()
    return create_unsubscribe_app(secret, lambda event: store.append([event], []))
