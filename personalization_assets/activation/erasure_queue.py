"""Deletions the destinations still owe: `activation.erasure_queue`, crypto-shredded when done.

A destination erases by the identifiers it knows (Mailchimp by address, Braze by external id), so
the queue must keep them until the destination confirms. It keeps them encrypted (AES-GCM), with
one key per erasure in a file outside the warehouse (`ERASURE_KEY_DIR`, default
`<data dir>/erasure_keys`). Once every destination of an erasure confirmed, the key file is
deleted: what is left in the warehouse (and in any old copy of its file) is unreadable, and it
never held the identifiers' bytes. A destination that fails keeps its rows and the key (error
noted) and is retried at its next sync.
"""

from __future__ import annotations

import base64
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .model import Destination

PREFIX = "aesgcm:"


def key_dir() -> Path:
    from .. import settings

    return Path(os.environ.get("ERASURE_KEY_DIR", settings.data_dir() / "erasure_keys"))


def _key_path(folder: Path, erasure_id: str) -> Path:
    if not erasure_id.isalnum():
        raise ValueError(f"erasure id must be alphanumeric, got {erasure_id!r}")
    return folder / f"{erasure_id}.key"


def new_key(folder: Path, erasure_id: str) -> bytes:
    """A fresh key, durably on disk before any row encrypted with it is committed."""
    folder.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    path = _key_path(folder, erasure_id)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def encrypt(key: bytes, value: str | None, context: str) -> str | None:
    if value is None:
        return None
    nonce = os.urandom(12)
    return PREFIX + base64.b64encode(nonce + AESGCM(key).encrypt(nonce, value.encode(), context.encode())).decode()


def decrypt(key: bytes | None, value: str | None, context: str) -> str | None:
    if not isinstance(value, str):
        return None
    if not value.startswith(PREFIX):
        return value  # a row queued before encryption
    if key is None:
        raise LookupError("its key file is missing")
    blob = base64.b64decode(value[len(PREFIX):])
    return AESGCM(key).decrypt(blob[:12], blob[12:], context.encode()).decode()


def enqueue(conn, erasure_id: str, destinations: Sequence[str], emails: Sequence[str], keys: Sequence[str],
            now: datetime, folder: Path | None = None) -> None:
    """One row per (destination, address) and (destination, customer key), encrypted."""
    if not destinations:
        return
    key = new_key(folder or key_dir(), erasure_id)
    rows = [(d, e, None) for d in destinations for e in sorted(emails)]
    rows += [(d, None, k) for d in destinations for k in sorted(keys)]
    rows = rows or [(d, None, None) for d in destinations]
    for dest, email, customer_key in rows:
        conn.execute("insert into activation.erasure_queue values (?, ?, ?, ?, ?, null, null)",
                     [erasure_id, dest, encrypt(key, email, erasure_id), encrypt(key, customer_key, erasure_id), now])


def _read_key(folder: Path, erasure_id: str) -> bytes | None:
    path = _key_path(folder, erasure_id)
    return path.read_bytes() if path.exists() else None


def _shred_finished(conn, folder: Path, erasure_ids: set[str]) -> None:
    for erasure_id in erasure_ids:
        left = conn.query("select count(*) as n from activation.erasure_queue where erasure_id = ? and done_at is null",
                          [erasure_id])["n"].iloc[0]
        if not left:
            _key_path(folder, erasure_id).unlink(missing_ok=True)


def process(conn, destinations: Sequence[Destination], now: datetime | None = None,
            folder: Path | None = None) -> dict[str, int]:
    """Delete queued people at each destination; returns people erased per destination."""
    if not conn.table_exists("activation", "erasure_queue"):
        return {}
    now, folder = now or datetime.now(timezone.utc), folder or key_dir()
    done: dict[str, int] = {}
    touched: set[str] = set()
    for dest in destinations:
        pending = conn.query("select erasure_id, email, customer_key from activation.erasure_queue "
                             "where destination = ? and done_at is null", [dest.name])
        for erasure_id, rows in pending.groupby("erasure_id"):
            try:
                key = _read_key(folder, erasure_id)
                emails = sorted(e for e in (decrypt(key, v, erasure_id) for v in rows["email"]) if e)
                keys = sorted(k for k in (decrypt(key, v, erasure_id) for v in rows["customer_key"]) if k)
                dest.delete(emails, keys)
            except Exception as exc:  # noted on the queue row and retried next time, never dropped
                conn.execute("update activation.erasure_queue set error = ? where erasure_id = ? and destination = ? "
                             "and done_at is null", [f"{type(exc).__name__}: {exc}"[:500], erasure_id, dest.name])
                continue
            conn.execute("update activation.erasure_queue set done_at = ?, email = null, customer_key = null, error = null "
                         "where erasure_id = ? and destination = ? and done_at is null", [now, erasure_id, dest.name])
            done[dest.name] = done.get(dest.name, 0) + 1
            touched.add(erasure_id)
    _shred_finished(conn, folder, touched)
    return done
