"""Opaque one-click unsubscribe tokens: the address, encrypted and authenticated, never readable.

A token travels in a URL, so it ends up in access logs, proxies, link scanners and referrers. It
must therefore prove the link is ours (no forged unsubscribes) without showing who it is for.

Choice: AEAD, not a lookup table. The token is `base64url(version | nonce | AES-GCM-SIV(address))`
with a 256-bit key derived by HKDF-SHA256 from `UNSUBSCRIBE_SECRET`. The endpoint stays stateless
(no store to keep in sync with every message sent, nothing to lose), and a tampered or foreign
token fails authentication. The nonce is random, so two messages to one address carry unrelated
tokens; GCM-SIV keeps a (very unlikely) nonce repeat from breaking confidentiality. The address is
padded to a multiple of 32 bytes so the token's length says little about it. Rotating the secret
invalidates every link already sent, like the HMAC before it.

Old tokens (`base64url(address).HMAC-SHA256`) are still read during a migration window: mail
already delivered carries them, and an unsubscribe from it must keep working (CAN-SPAM: 30 days at
least). They are never produced any more; switch them off with `accept_legacy=False`
(`UNSUBSCRIBE_ACCEPT_LEGACY_TOKENS=0`) once the last message that carried one is old enough.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = b"\x02"
NONCE_BYTES = 12
PAD_TO = 32
MAX_TOKEN_CHARS = 512  # an address is at most 254 bytes; anything longer is not ours
_KDF_INFO = b"personalization-assets/unsubscribe-token/v2"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cipher(secret: str) -> AESGCMSIV:
    if not secret:
        raise ValueError("the unsubscribe secret is empty: set UNSUBSCRIBE_SECRET")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(secret.encode())
    return AESGCMSIV(key)


def make_token(secret: str, email: str) -> str:
    """An opaque token for `email` (normalized: trimmed, lower case)."""
    address = email.strip().lower().encode()
    padded = address + b"\0" * (-len(address) % PAD_TO)  # NUL never occurs in an address
    nonce = os.urandom(NONCE_BYTES)
    return _b64(VERSION + nonce + _cipher(secret).encrypt(nonce, padded, VERSION))


def read_token(secret: str, token: str, accept_legacy: bool = True) -> str | None:
    """The address a token was made for, or None when it is malformed, tampered with or foreign."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    if "." in token:  # the old, readable format
        return _read_legacy(secret, token) if accept_legacy else None
    try:
        blob = _unb64(token)
    except (ValueError, binascii.Error):
        return None
    if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != VERSION:
        return None
    nonce, sealed = blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:]
    try:
        return _cipher(secret).decrypt(nonce, sealed, VERSION).rstrip(b"\0").decode()
    except (InvalidTag, UnicodeDecodeError):
        return None


def _read_legacy(secret: str, token: str) -> str | None:
    try:
        encoded, mac = token.split(".", 1)
        address = _unb64(encoded)
        expected = hmac.new(secret.encode(), address, hashlib.sha256).digest()
        return address.decode() if hmac.compare_digest(expected, _unb64(mac)) else None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def make_legacy_token(secret: str, email: str) -> str:
    """The old format, kept only so tests can prove the migration window; never put it in mail."""
    address = email.strip().lower().encode()
    return _b64(address) + "." + _b64(hmac.new(secret.encode(), address, hashlib.sha256).digest())
