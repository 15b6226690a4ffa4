"""Signature checks of each provider's webhook, plus the replay window. Each raises `Refused`
(-> HTTP 401) with the reason; nothing is stored from a request that fails here."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from functools import lru_cache

from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader

SENDGRID_SIGNATURE = EventWebhookHeader.SIGNATURE
SENDGRID_TIMESTAMP = EventWebhookHeader.TIMESTAMP
GENERIC_SIGNATURE = "X-Webhook-Signature"  # "sha256=<hex HMAC-SHA256 of '<timestamp>.<body>'>"
GENERIC_TIMESTAMP = "X-Webhook-Timestamp"  # unix seconds


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def check_fresh(timestamp: str | None, now: float, tolerance_s: float) -> None:
    """Reject requests signed outside +-tolerance: a captured request cannot be replayed later."""
    try:
        sent = float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise Refused(401, "bad_timestamp", "missing or malformed signature timestamp") from None
    if not math.isfinite(sent):  # NaN compares false with everything: it would pass the window check
        raise Refused(401, "bad_timestamp", "signature timestamp must be finite unix seconds")
    if abs(now - sent) > tolerance_s:
        raise Refused(401, "stale_timestamp",
                      f"signature timestamp is {now - sent:.0f} s off; allowed +-{tolerance_s:.0f} s")


@lru_cache(maxsize=8)
def _sendgrid_verifier(public_key: str) -> EventWebhook:
    return EventWebhook(public_key)


def verify_sendgrid(public_key: str, body: bytes, signature: str | None, timestamp: str | None,
                    now: float, tolerance_s: float) -> None:
    """ECDSA (P-256, SHA-256) over timestamp + raw body, checked by the sendgrid package's helper."""
    if not signature or not timestamp:
        raise Refused(401, "unsigned", f"missing {SENDGRID_SIGNATURE} or {SENDGRID_TIMESTAMP} header")
    check_fresh(timestamp, now, tolerance_s)
    try:
        ok = _sendgrid_verifier(public_key).verify_signature(body.decode("utf-8"), signature, timestamp)
    except (UnicodeDecodeError, binascii.Error, ValueError):
        ok = False
    if not ok:
        raise Refused(401, "bad_signature", "SendGrid signature does not verify with the configured public key")


def verify_mailgun(signing_key: str, signature: dict | None, now: float, tolerance_s: float) -> None:
    """Mailgun: hex HMAC-SHA256 of timestamp + token with the webhook signing key."""
    if not isinstance(signature, dict) or not all(isinstance(signature.get(k), str) and signature.get(k)
                                                  for k in ("timestamp", "token", "signature")):
        raise Refused(401, "unsigned", "Mailgun payload has no signature {timestamp, token, signature}")
    check_fresh(signature["timestamp"], now, tolerance_s)
    expected = hmac.new(signing_key.encode(), (signature["timestamp"] + signature["token"]).encode(),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature["signature"]):
        raise Refused(401, "bad_signature", "Mailgun signature does not match the signing key")


def sign_generic(secret: str, body: bytes, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_generic(secret: str, body: bytes, signature: str | None, timestamp: str | None,
                   now: float, tolerance_s: float) -> None:
    if not signature or not timestamp:
        raise Refused(401, "unsigned", f"missing {GENERIC_SIGNATURE} or {GENERIC_TIMESTAMP} header")
    check_fresh(timestamp, now, tolerance_s)
    if not hmac.compare_digest(sign_generic(secret, body, timestamp), signature.strip()):
        raise Refused(401, "bad_signature", "HMAC-SHA256 signature does not match the shared secret")


def sendgrid_public_key_is_valid(public_key: str) -> bool:
    try:
        base64.b64decode(public_key, validate=True)
        _sendgrid_verifier(public_key)
        return True
    except (binascii.Error, ValueError):
        return False
