"""`identifier_hash`: the one digest of an identifier (an address, a phone, a key) kept where the
identifier itself may not be: suppression lists, erasure receipts, the sender's stop list. Every
copy must agree, or an unsubscribed or erased address stops matching its suppression."""

from __future__ import annotations

import hashlib


def identifier_hash(value: str) -> str:
    """SHA-256 hex of `value` trimmed and lower-cased."""
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()
