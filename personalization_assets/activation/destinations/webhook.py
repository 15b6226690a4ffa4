"""A generic signed webhook: JSON batches, HMAC-SHA256 signature, idempotency key headers.

Signature: `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of "<X-Webhook-Timestamp>.<body>">`,
the same scheme as our inbound generic webhook, so a receiver can verify both the same way.
`Idempotency-Key` is the batch key; each row also carries its own `idempotency_key`, stable across
retries and re-runs, which is what a receiver deduplicates on.

Identity changes travel as `{"identity": [{"type": "identity.merge" | "identity.unmerge", ...}]}`
(see `activation.identity_changes`), erasures as `{"erase": {...}}`.

The receiver may answer `{"results": [{"row_key": ..., "ok": false, "error": ...}]}` to refuse
single rows; any other 2xx acknowledges the whole batch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..http import HttpTransport
from ..model import EVENTS, MIRROR, UPSERT, DeliveryError, RowResult, SyncRow, all_failed, all_ok

SIGNATURE_HEADER, TIMESTAMP_HEADER, IDEMPOTENCY_HEADER = "X-Webhook-Signature", "X-Webhook-Timestamp", "Idempotency-Key"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature or "")


def row_document(row: SyncRow) -> dict:
    return {"row_key": row.row_key, "idempotency_key": row.idempotency_key, "op": row.op,
            "segment": row.segment, "customer_key": row.customer_key, "email": row.email,
            "payload": row.payload}


@dataclass
class SignedWebhook:
    url: str
    secret: str
    transport: HttpTransport
    name: str = "webhook"
    batch_size: int = 500
    modes: frozenset[str] = frozenset({UPSERT, MIRROR, EVENTS})
    clock: Callable[[], float] = field(default=time.time)

    def _post(self, document: dict, key: str) -> dict:
        body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
        stamp = str(int(self.clock()))
        response = self.transport.request("POST", self.url, data=body, headers={
            SIGNATURE_HEADER: sign(self.secret, stamp, body), TIMESTAMP_HEADER: stamp, IDEMPOTENCY_HEADER: key})
        try:
            return response.json() if response.content else {}
        except ValueError:
            return {}

    def send(self, rows: Sequence[SyncRow], batch_key: str) -> list[RowResult]:
        try:
            answer = self._post({"batch_key": batch_key, "rows": [row_document(r) for r in rows]}, batch_key)
        except DeliveryError as exc:
            return all_failed(rows, str(exc), exc.retryable)
        refused = {r["row_key"]: r.get("error") or "refused" for r in answer.get("results", []) or []
                   if isinstance(r, dict) and not r.get("ok", True)}
        if not refused:
            return all_ok(rows)
        return [RowResult(r.row_key, r.row_key not in refused, refused.get(r.row_key)) for r in rows]

    def merge_profiles(self, changes: Sequence) -> None:
        """`identity.merge` events (`from` merged into `into`); raises when not acknowledged."""
        self._identity(changes, "identity.merge")

    def unmerge_profiles(self, changes: Sequence) -> None:
        """`identity.unmerge` events: the profile `from` is now the people `into`."""
        self._identity(changes, "identity.unmerge")

    def _identity(self, changes: Sequence, event: str) -> None:
        for start in range(0, len(changes), self.batch_size):
            chunk = changes[start:start + self.batch_size]
            events = [{"type": event, "idempotency_key": c.change_id, "from": c.old_key,
                       "into": c.new_keys[0] if event == "identity.merge" else list(c.new_keys)} for c in chunk]
            key = "identity-" + hashlib.sha256("|".join(e["idempotency_key"] for e in events).encode()).hexdigest()[:32]
            self._post({"batch_key": key, "identity": events}, key)

    def delete(self, emails: Sequence[str], customer_keys: Sequence[str]) -> None:
        key = "erase-" + hashlib.sha256("|".join(sorted([*emails, *customer_keys])).encode()).hexdigest()[:32]
        self._post({"batch_key": key, "erase": {"emails": list(emails), "customer_keys": list(customer_keys)}}, key)
